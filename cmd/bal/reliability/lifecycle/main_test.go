package lifecycle_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

func TestMain(m *testing.M) {
	helperMain() // this binary doubles as a client run as another user
	baltest.MainLong(m)
}

// variant names the run in figures.
func variant() string { return baltest.Pick("fast", "soak") }

// quietRuntime is a runtime block with slow, quiet health checks (the
// tests here are about lifecycle, not health), plus extra lines.
func quietRuntime(extra ...string) []string {
	return append([]string{
		"health_check_interval_ms: 1000",
		"health_check_timeout_ms: 500",
		"backend_connect_timeout_ms: 1000",
	}, extra...)
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

// clip shortens s for a message.
func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}
