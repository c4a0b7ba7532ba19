package baltest

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	raceOnce sync.Once
	raceBin  string
	raceErr  error
)

// RaceBinary builds bal with the race detector (once per test process,
// beside Bin, so Main removes it) and returns its path. Start it through
// the Binary option; its races go to its stderr (the log Proc keeps) as
// "WARNING: DATA RACE", and with RaceEnv it exits 66 if it saw any.
func RaceBinary(t testing.TB) string {
	t.Helper()
	NeedBinary(t)
	raceOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		out := filepath.Join(filepath.Dir(Bin), "bal-race")
		c := exec.Command("go", "build", "-race", "-ldflags", "-X main.version="+Version, "-o", out, ".")
		c.Dir = filepath.Join(filepath.Dir(file), "..", "..")
		c.Stdout, c.Stderr = os.Stderr, os.Stderr
		if raceErr = c.Run(); raceErr == nil {
			raceBin = out
		}
	})
	if raceErr != nil {
		t.Fatalf("building bal with -race: %v", raceErr)
	}
	return raceBin
}

// RaceEnv makes a race-built bal report every race and exit 66 at the end
// when it saw one.
func RaceEnv() Option { return Env("GORACE=halt_on_error=0 exitcode=66") }

// RaceReports returns the race reports bal wrote to its log so far.
func (p *Proc) RaceReports() int { return strings.Count(p.RawLog(), "WARNING: DATA RACE") }
