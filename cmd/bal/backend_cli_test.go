package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/bal-lb/bal/engine/control"
)

// TestBackendCommandInProcess: bal backend's usage errors (exit 2, one line
// on stderr), its help, and what it says when no bal runs (exit 1).
func TestBackendCommandInProcess(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout string // substring
		stderr string // substring
	}{
		{[]string{"backend", "--help"}, 0, "bal backend drain BACKEND", ""},
		{[]string{"help", "backend"}, 0, "Exit codes: 0 applied", ""},
		{[]string{"backend"}, 2, "", "missing subcommand"},
		{[]string{"backend", "up", "10.0.0.1:80"}, 2, "", `unknown subcommand "up"`},
		{[]string{"backend", "drain"}, 2, "", "missing BACKEND"},
		{[]string{"backend", "drain", "10.0.0.1"}, 2, "", "no port"},
		{[]string{"backend", "drain", "10.0.0.1:99999"}, 2, "", "from 1 to 65535"},
		{[]string{"backend", "drain", "10.0.0.1:80", "10.0.0.2:80"}, 2, "", "unexpected argument"},
		{[]string{"backend", "drain", "10.0.0.1:80", "--close-after", "1x"}, 2, "", "not a duration"},
		{[]string{"backend", "drain", "10.0.0.1:80", "--close-after", "0s"}, 2, "", "must be positive"},
		{[]string{"backend", "maint", "10.0.0.1:80", "--close-after=1ns"}, 2, "", "below a millisecond"},
		{[]string{"backend", "ready", "10.0.0.1:80", "--close-after", "1m"}, 2, "", "drain and maint"},
		{[]string{"backend", "list", "--close-after", "1m"}, 2, "", "drain and maint"},
		{[]string{"backend", "list", "extra"}, 2, "", "unexpected argument"},
		{[]string{"backend", "drain", "10.0.0.1:80", "--json"}, 2, "", "--json applies to list"},
		{[]string{"backend", "--service"}, 2, "", "flag needs an argument"},
		{[]string{"backend", "drain", "::1:80"}, 1, "", "not running"},
		{[]string{"backend", "ready", "[::1]:80", "--service", "web", "--route", "default"}, 1, "", "start it with 'bal start -d'"},
		{[]string{"backend", "list"}, 1, "", "not running"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, out, errOut := runInProcess(t, tt.args...)
			if code != tt.code || !strings.Contains(out, tt.stdout) || !strings.Contains(errOut, tt.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout %q (want %q)\nstderr %q (want %q)", code, tt.code, out, tt.stdout, errOut, tt.stderr)
			}
			if code == exitUsage && strings.Count(strings.TrimSuffix(errOut, "\n"), "\n") != 0 {
				t.Fatalf("a usage error on more than one line: %q", errOut)
			}
		})
	}
	code, out, _ := runInProcess(t, "backend", "list", "--json")
	var doc struct {
		Backends []control.BackendEntry `json:"backends"`
		Error    *string                `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &doc); code != 1 || err != nil || doc.Backends == nil || doc.Error == nil {
		t.Fatalf("list --json, not running: exit %d %q %v", code, out, err)
	}
}

// TestStatusReportAdmin: bal status counts the backends taken out and the
// verbose backend lines show the admin state and the last check error.
func TestStatusReportAdmin(t *testing.T) {
	msg := "check_failed: HTTP status 503 not in 200-399"
	f := servicesStatus(func(st *control.Status) {
		st.Services[0].Routes[0].Backends[0].AdminState = "drain"
		st.Services[1].Backends[1].AdminState = "maint"
		st.Services[1].Backends[1].LastCheckError = &msg
	})
	var b strings.Builder
	statusReport(statusFrom(f, ""), true).write(&b)
	for _, want := range []string{
		"  admin: 1 drain, 1 maint (see 'bal backend list')\n",
		"api 10.0.0.1:443 reachable=true",
		" admin=drain",
		`10.0.1.2:5432 reachable=true weight=1 active=0 total=0 last_check=2026-01-02T03:04:05Z counters(timeout=0, refused=0, other=0) admin=maint last_check_error="check_failed: HTTP status 503 not in 200-399"`,
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	statusReport(statusFrom(servicesStatus(nil), ""), true).write(&b)
	if strings.Contains(b.String(), "admin") {
		t.Errorf("a report with every backend ready mentions admin states:\n%s", b.String())
	}
}
