package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine/control"
	"github.com/bal-lb/bal/engine/pidfile"
)

// liveStatus is a running bal's status with two backends, both up.
func liveStatus(mod func(st *control.Status)) *found {
	check := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := &control.Status{
		State: control.StateRunning, PID: 4242, Version: "v1", ConfigPath: "/etc/bal/config.yaml",
		BindAddress: "127.0.0.1", Port: 9295, Listen: "127.0.0.1:9295", Method: "round_robin", Engine: "gnet",
		UptimeS: 61, BackendTotal: 2, BackendReachable: 2,
		Backends: []control.Backend{
			{Address: "10.0.0.1:80", Reachable: true, Weight: 1, ActiveConnections: 2, TotalConnections: 10, LastCheckTime: &check},
			{Address: "10.0.0.2:80", Reachable: true, Weight: 3, ActiveConnections: 1, TotalConnections: 30, LastCheckTime: &check,
				Counters: control.Counters{Timeout: 1, Refused: 2, Other: 3}},
		},
		ActiveConnections: 3, TotalConnections: 40, LastCheckTime: &check, DrainTimeoutMS: 30000,
	}
	if mod != nil {
		mod(st)
	}
	return &found{home: "/h", sockPath: "/h/bal.sock", pidPath: "/h/bal.pid", live: st, pid: st.PID}
}

func TestStatusJudgement(t *testing.T) {
	reason := "timeout_or_refused_storm"
	rejected := "reload rejected: invalid config: line 3: unknown key \"x\""
	notRunning := fmt.Errorf("%w (no pid file /h/bal.pid)", pidfile.ErrNotRunning)
	tests := []struct {
		name    string
		f       *found
		overall string
		code    int
		what    string // what_happened, "" for next:
		brief   string
	}{
		{"healthy", liveStatus(nil), levelOK, exitOK, "",
			"OK running pid=4242 on 127.0.0.1:9295 (gnet), 2/2 backends reachable, 3 active connections, protection off\n"},
		{"not running", &found{home: "/h", pidErr: notRunning, liveErr: control.ErrNotRunning}, levelFailed, exitNotRunning,
			"daemon is not running", "FAILED not running: bal is not running (no pid file /h/bal.pid)\n"},
		{"control not answering", &found{home: "/h", pid: 7, liveErr: errors.New("timeout")}, levelWarn, exitOK,
			"daemon is running but its control socket does not answer", "WARN running pid=7, control socket not answering\n"},
		{"draining", liveStatus(func(st *control.Status) { st.State = control.StateDraining }), levelWarn, exitOK,
			"daemon is shutting down", ""},
		{"none reachable", liveStatus(func(st *control.Status) {
			st.BackendReachable = 0
			st.Backends[0].Reachable, st.Backends[1].Reachable = false, false
		}), levelWarn, exitOK, "no backend is reachable", ""},
		{"reload rejected", liveStatus(func(st *control.Status) {
			st.LastReload = &control.Reload{Time: time.Now(), Error: &rejected, Changes: []string{}}
		}), levelWarn, exitOK, "the last reload was rejected; the previous configuration keeps serving", ""},
		{"protection", liveStatus(func(st *control.Status) {
			st.ProtectionMode = control.Protection{Enabled: true, Reason: &reason}
		}), levelWarn, exitOK, "protection mode is on (timeout_or_refused_storm)", ""},
		{"partial", liveStatus(func(st *control.Status) {
			st.BackendReachable = 1
			st.Backends[1].Reachable = false
		}), levelWarn, exitOK, "some backends are unreachable", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := statusFrom(tt.f, "")
			if res.Overall != tt.overall {
				t.Errorf("overall %s, want %s", res.Overall, tt.overall)
			}
			if code := map[bool]int{true: exitOK, false: exitNotRunning}[res.Running]; code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			var b strings.Builder
			statusReport(res, false).write(&b)
			out := b.String()
			if !strings.HasPrefix(out, "bal status\n  overall: "+tt.overall+"\n") {
				t.Errorf("report:\n%s", out)
			}
			if tt.what == "" {
				if !strings.HasSuffix(out, "  next: continue monitoring with 'bal status'\n") {
					t.Errorf("report does not end with next:\n%s", out)
				}
			} else if !strings.Contains(out, "  what_happened: "+tt.what+"\n  why_likely: ") || !strings.Contains(out, "\n  do_this_now: ") {
				t.Errorf("report lacks the triplet %q:\n%s", tt.what, out)
			}
			if tt.brief != "" {
				b.Reset()
				brief(&b, res.Overall, statusBrief(res))
				if b.String() != tt.brief {
					t.Errorf("brief %q, want %q", b.String(), tt.brief)
				}
			}
		})
	}
}

// TestStatusReportVerbose pins the verbose shape of a healthy instance.
func TestStatusReportVerbose(t *testing.T) {
	var b strings.Builder
	statusReport(statusFrom(liveStatus(nil), ""), true).write(&b)
	want := `bal status
  overall: OK
  daemon: running (pid=4242)
  backends: 2/2 reachable
  connections: 3 active, 40 total
  protection_mode: off
  listen: 127.0.0.1:9295
  engine: gnet
  method: round_robin
  config: /etc/bal/config.yaml
  version: v1
  uptime: 1m1s
  active_connections: 3
  total_connections: 40
  rejected_connections: 0
  bytes: client_to_backend=0 backend_to_client=0
  last_check_time: 2026-01-02T03:04:05Z
  reloads: 0 ok, 0 rejected
  last_reload: none
  backend_details: 2
    - 10.0.0.1:80 reachable=true weight=1 active=2 total=10 last_check=2026-01-02T03:04:05Z counters(timeout=0, refused=0, other=0)
    - 10.0.0.2:80 reachable=true weight=3 active=1 total=30 last_check=2026-01-02T03:04:05Z counters(timeout=1, refused=2, other=3)
  next: continue monitoring with 'bal status'
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestDoctorReport(t *testing.T) {
	hint := "restart it"
	res := &doctorJSON{
		Overall: levelFailed, Critical: 1, Warnings: 1,
		Checks: []doctorCheck{
			{Name: "pid", Level: checkOK, Summary: "pid file absent and no daemon running"},
			{Name: "bind", Level: checkCritical, Summary: "127.0.0.1:9295 is already in use by another process", Hint: &hint},
			{Name: "control", Level: checkWarn, Summary: "bal is not running (no control socket)"},
		},
	}
	var b strings.Builder
	doctorReport(res, false).write(&b)
	want := `bal doctor
  overall: FAILED
  critical: 1
  warnings: 1
  protection_mode: off
  findings: 2
    - [CRITICAL] bind: 127.0.0.1:9295 is already in use by another process
    - [WARN] control: bal is not running (no control socket)
  what_happened: runtime diagnostics found critical failures
  why_likely: daemon state, bind target, or backend connectivity is broken
  do_this_now: run 'bal doctor --verbose' and fix critical checks before 'bal status'
`
	if b.String() != want {
		t.Errorf("concise:\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	doctorReport(res, true).write(&b)
	if !strings.Contains(b.String(), "  checks: 3\n    - [OK] pid: pid file absent and no daemon running\n    - [CRITICAL] bind: 127.0.0.1:9295 is already in use by another process\n      hint: restart it\n") {
		t.Errorf("verbose:\n%s", b.String())
	}
	if got := doctorBrief(res); got != "1 critical, 1 warning: bind: 127.0.0.1:9295 is already in use by another process; control: bal is not running (no control socket)" {
		t.Errorf("brief %q", got)
	}
	ok := &doctorJSON{Overall: levelOK, Checks: res.Checks[:1]}
	b.Reset()
	doctorReport(ok, false).write(&b)
	if !strings.HasSuffix(b.String(), "  protection_mode: off\n  next: run 'bal status'\n") {
		t.Errorf("all ok:\n%s", b.String())
	}
}
