package baltest

import (
	"os"
	"slices"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

// TestHarness starts a real bal, sends traffic through it, reloads it,
// measures it and stops it: the harness itself works.
func TestHarness(t *testing.T) {
	a, b := NewBackend(t, Name("a")), NewBackend(t, Name("b"))
	cfg := Config{Port: FreePort(t), Backends: []string{a.Addr(), b.Addr()}, Runtime: []string{"drain_timeout_ms: 1000"}}
	p := Start(t, cfg)
	got := map[string]int{}
	for range 4 {
		name, err := Who(p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		got[name]++
	}
	if got["a"] != 2 || got["b"] != 2 || a.Accepted() < 2 { // health checks connect too
		t.Fatalf("distribution %v, a accepted %d", got, a.Accepted())
	}
	cfg.Backends = cfg.Backends[:1]
	if e := p.Reload(&cfg); e.Msg != "reloaded" {
		t.Fatalf("reload: %v", e.Attrs)
	}
	if name, err := Who(p.Addr()); err != nil || name != "a" {
		t.Fatalf("after reload: %q, %v", name, err)
	}
	if p.FDs() < 3 || p.RSS() <= 0 || p.Threads() < 1 {
		t.Fatalf("measurements: fds %d rss %d threads %d", p.FDs(), p.RSS(), p.Threads())
	}
	if code := p.Stop(5 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if _, err := os.Stat(p.Home + "/bal.pid"); !os.IsNotExist(err) {
		t.Fatalf("pid file left: %v", err)
	}
}

func TestRecord(t *testing.T) {
	path := t.TempDir() + "/report.tsv"
	t.Setenv(ReportEnv, path)
	Record(t, 7, "1.2 s", true)
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "7\tTestRecord\t1.2 s\tpass\n" {
		t.Fatalf("report %q, %v", b, err)
	}
}

// TestAsUser: an instance run as an unprivileged user works with the home
// and config the harness prepares for it.
func TestAsUser(t *testing.T) {
	NeedRoot(t)
	a := NewBackend(t, Name("a"))
	p := Start(t, Config{Port: FreePort(t), Backends: []string{a.Addr()}}, AsUser(Nobody, Nobody))
	if name, err := Who(p.Addr()); err != nil || name != "a" {
		t.Fatalf("through bal as uid %d: %q, %v", Nobody, name, err)
	}
	if code := p.Stop(5 * time.Second); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func TestOverride(t *testing.T) {
	rt := []string{"health_check_interval_ms: 100", "max_concurrent_connections: 1000"}
	tests := []struct {
		name  string
		lines []string
		want  []string
	}{
		{"nothing", nil, rt},
		{"replaced in place", []string{"max_concurrent_connections: 5"}, []string{"health_check_interval_ms: 100", "max_concurrent_connections: 5"}},
		{"added at the end", []string{"drain_timeout_ms: 1000"}, []string{"health_check_interval_ms: 100", "max_concurrent_connections: 1000", "drain_timeout_ms: 1000"}},
		{"a key is not a prefix", []string{"health_check_interval: 7"}, []string{"health_check_interval_ms: 100", "max_concurrent_connections: 1000", "health_check_interval: 7"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Override(rt, tt.lines...); !slices.Equal(got, tt.want) {
				t.Errorf("Override = %q, want %q", got, tt.want)
			}
		})
	}
	if rt[1] != "max_concurrent_connections: 1000" {
		t.Errorf("Override changed its input: %q", rt)
	}
}
