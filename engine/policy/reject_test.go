package policy

import (
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
)

// TestRejectionsByReason: the policy counts its own refusals (Admit over
// max_concurrent_connections) and the engines' (Refused) in one total and
// by reason, every reason present from the start.
func TestRejectionsByReason(t *testing.T) {
	f := newFixture(t, service(config.RoundRobin, func(r *config.Runtime) { r.MaxConcurrentConnections = 1 }, five()[:1]...), Options{})
	st := f.p.Status()
	if st.Rejected != 0 || len(st.RejectedBy) != len(engine.RejectReasons()) {
		t.Fatalf("fresh status: rejected %d, by reason %v", st.Rejected, st.RejectedBy)
	}
	held := connect(f.p, "192.0.2.1:5000", ok)
	if !held.admitted {
		t.Fatal("first connection refused")
	}
	for range 2 {
		if c := connect(f.p, "192.0.2.1:5001", ok); c.admitted {
			t.Fatal("connection over max_concurrent_connections admitted")
		}
	}
	ci := &engine.ConnInfo{Client: netip.MustParseAddrPort("192.0.2.2:6000")}
	f.p.Refused(ci, engine.RejectLimit)
	f.p.Refused(ci, engine.RejectACL)

	st = f.p.Status()
	want := map[engine.RejectReason]uint64{engine.RejectLimit: 3, engine.RejectACL: 1}
	for _, r := range engine.RejectReasons() {
		if got, ok := st.RejectedBy[r]; !ok || got != want[r] {
			t.Errorf("RejectedBy[%s] = %d (present %v), want %d", r, got, ok, want[r])
		}
	}
	if st.Rejected != 4 || st.Total != 1 || st.Active != 1 {
		t.Fatalf("rejected %d total %d active %d, want 4, 1, 1", st.Rejected, st.Total, st.Active)
	}
	held.close(f.p)
}

// TestRejectLogRateLimited: refusals log at most once a second, each line
// with its reason and the count since the previous line.
func TestRejectLogRateLimited(t *testing.T) {
	f := newFixture(t, service(config.RoundRobin, nil, five()[:1]...), Options{})
	ci := &engine.ConnInfo{}
	f.p.Refused(ci, engine.RejectLimit) // first: logged at once
	for range 9 {
		f.p.Refused(ci, engine.RejectLimit)
	}
	f.p.Refused(ci, engine.RejectACL)
	if n := len(f.log.lines("rejecting connections")); n != 1 {
		t.Fatalf("%d log lines within the first second, want 1", n)
	}
	f.clk.Advance(time.Second)
	f.p.Refused(ci, engine.RejectLimit)
	lines := f.log.lines("rejecting connections")
	got := map[string]float64{}
	for _, l := range lines[1:] {
		got[l["reason"].(string)] += l["count"].(float64)
	}
	if len(lines) != 3 || lines[0]["reason"] != "limit" || lines[0]["count"] != 1.0 || got["limit"] != 10 || got["acl"] != 1 {
		t.Fatalf("log lines %v, want limit×1, then limit×10 and acl×1 a second later", lines)
	}
}

// TestLocalFailureLog: a connect that failed for lack of local resources is
// counted (not against the backend) and logged at most once a second with
// the resource.
func TestLocalFailureLog(t *testing.T) {
	f := newFixture(t, service(config.RoundRobin, nil, five()[:1]...), Options{})
	emfile := os.NewSyscallError("connect", syscall.EMFILE)
	for range 3 {
		c := connect(f.p, "192.0.2.1:5000", func(engine.Target) error { return emfile })
		c.close(f.p)
	}
	lines := f.log.lines("rejecting connections")
	if len(lines) != 1 || lines[0]["reason"] != "local_fds" || lines[0]["count"] != 1.0 {
		t.Fatalf("log lines %v, want one local_fds line", lines)
	}
	f.clk.Advance(time.Second)
	c := connect(f.p, "192.0.2.1:5000", func(engine.Target) error { return os.NewSyscallError("connect", syscall.EADDRNOTAVAIL) })
	c.close(f.p)
	lines = f.log.lines("rejecting connections")
	if len(lines) != 3 || lines[1]["reason"] != "local_fds" || lines[1]["count"] != 2.0 || lines[2]["reason"] != "local_ports" {
		t.Fatalf("log lines %v, want local_fds×2 and local_ports×1 a second later", lines)
	}
	if st := f.p.Status(); st.LocalFailures != 4 || st.DefaultBackends()[0].Counters.Other != 0 || st.Rejected != 0 {
		t.Fatalf("local failures %d, backend counters %+v, rejected %d", st.LocalFailures, st.DefaultBackends()[0].Counters, st.Rejected)
	}
}
