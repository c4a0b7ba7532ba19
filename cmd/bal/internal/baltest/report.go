package baltest

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
)

// ReportEnv names the file Record appends figures to (make soak sets it).
const ReportEnv = "BAL_SOAK_REPORT"

var reportMu sync.Mutex

// Record notes a test's figure for the soak table: id is the test's number
// in research/reliability-anchors.md (0 when none), figure the measured
// value with its unit. A failed pass also fails t. Without ReportEnv the
// figure is only logged.
func Record(t testing.TB, id int, figure string, pass bool) {
	t.Helper()
	t.Logf("figure: %s (pass %v)", figure, pass)
	if !pass {
		t.Errorf("figure out of bounds: %s", figure)
	}
	path := os.Getenv(ReportEnv)
	if path == "" {
		return
	}
	reportMu.Lock()
	defer reportMu.Unlock()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Errorf("soak report: %v", err)
		return
	}
	defer f.Close()
	verdict := "pass"
	if !pass {
		verdict = "FAIL"
	}
	clean := func(s string) string { return strings.ReplaceAll(strings.ReplaceAll(s, "\t", " "), "\n", " ") }
	fmt.Fprintf(f, "%d\t%s\t%s\t%s\n", id, clean(t.Name()), clean(figure), verdict)
}
