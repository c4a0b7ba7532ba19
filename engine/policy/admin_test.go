package policy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/pool"
)

var threeBackends = []config.Backend{be("127.0.0.1", 9001, 1), be("127.0.0.1", 9002, 1), be("127.0.0.1", 9003, 1)}

// picked runs n connections from distinct clients through p, each
// connecting where outcome lets it, and returns the set of backends that
// got one (sorted) and how many found none.
func picked(p *Policy, n int, outcome func(engine.Target) error) (set []string, none int) {
	seen := map[string]bool{}
	for i := range n {
		c := connect(p, fmt.Sprintf("192.0.2.%d:%d", i%250+1, 1000+i), outcome)
		if c.ok {
			seen[c.connected.Name] = true
		} else {
			none++
		}
		c.close(p)
	}
	for k := range seen {
		set = append(set, k)
	}
	slices.Sort(set)
	return set, none
}

// TestAdminStatePicks: drain and maint take a backend out of every pick —
// healthy picks, failover to unhealthy ones and the last resort — for every
// method; ready puts it back; a pool with every backend out gives no
// backend without feeding protection mode.
func TestAdminStatePicks(t *testing.T) {
	type step struct {
		admin map[string]pool.AdminState // set before picking
		down  []string                   // backends refusing connects (they turn unhealthy)
		want  []string                   // backends that get connections
		none  bool                       // every connection finds no backend
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"all ready", []step{{want: []string{A, B, C}}}},
		{"drain one", []step{{admin: map[string]pool.AdminState{B: pool.Drain}, want: []string{A, C}}}},
		{"maint one", []step{{admin: map[string]pool.AdminState{C: pool.Maint}, want: []string{A, B}}}},
		{"drain then ready", []step{
			{admin: map[string]pool.AdminState{A: pool.Drain}, want: []string{B, C}},
			{admin: map[string]pool.AdminState{A: pool.Ready}, want: []string{A, B, C}},
		}},
		{"drain then maint then ready", []step{
			{admin: map[string]pool.AdminState{A: pool.Drain}, want: []string{B, C}},
			{admin: map[string]pool.AdminState{A: pool.Maint}, want: []string{B, C}},
			{admin: map[string]pool.AdminState{A: pool.Ready}, want: []string{A, B, C}},
		}},
		{"drained and another down", []step{{admin: map[string]pool.AdminState{B: pool.Drain}, down: []string{A}, want: []string{C}}}},
		{"only a drained one healthy: failover stays off it", []step{
			{admin: map[string]pool.AdminState{B: pool.Drain}, down: []string{A, C}, none: true},
		}},
		{"every backend out", []step{
			{admin: map[string]pool.AdminState{A: pool.Drain, B: pool.Maint, C: pool.Drain}, none: true},
			{admin: map[string]pool.AdminState{B: pool.Ready}, want: []string{B}},
		}},
	}
	methods := []config.Method{config.RoundRobin, config.LeastConnections, config.RandomTwo, config.SourceHash}
	for _, m := range methods {
		for _, tt := range tests {
			t.Run(string(m)+"/"+tt.name, func(t *testing.T) {
				f := newFixture(t, service(m, func(r *config.Runtime) { r.ProtectionTriggerThreshold = 1 << 20 }, threeBackends...), Options{})
				for i, s := range tt.steps {
					for addr, st := range s.admin {
						if ch := f.p.SetAdmin("", addr, st, 0); len(ch) != 1 || ch[0].New != st || ch[0].Address != addr {
							t.Fatalf("step %d: SetAdmin(%s, %s) = %+v", i, addr, st, ch)
						}
					}
					refuse := map[string]error{}
					for _, d := range s.down {
						refuse[d] = errRefused
					}
					got, none := picked(f.p, 120, failing(refuse))
					if s.none {
						if len(got) != 0 || none != 120 {
							t.Fatalf("step %d: connections went to %v (%d found none), want none", i, got, none)
						}
					} else if !slices.Equal(got, s.want) {
						t.Fatalf("step %d: connections went to %v, want %v", i, got, s.want)
					}
				}
				failures := false
				for _, s := range tt.steps {
					failures = failures || len(s.down) > 0
				}
				if st := f.p.Status(); !failures && st.Protection.Transitions != 0 {
					t.Fatalf("protection mode turned on (%+v): taking backends out is no failure", st.Protection)
				}
			})
		}
	}
}

// TestAdminLeavesOpenConnections: a connection open on a backend that is
// drained (or put in maintenance) keeps it: counts stay until it closes;
// status shows the state.
func TestAdminLeavesOpenConnections(t *testing.T) {
	f := newFixture(t, service(config.RoundRobin, nil, threeBackends...), Options{})
	var open []*conn
	for range 3 {
		open = append(open, connect(f.p, "192.0.2.1:1", ok))
	}
	f.p.SetAdmin("", A, pool.Drain, 0)
	f.p.SetAdmin("", B, pool.Maint, 0)
	for addr, want := range map[string]pool.AdminState{A: pool.Drain, B: pool.Maint, C: pool.Ready} {
		if b := f.backend(t, addr); b.Admin != want || b.Active != 1 {
			t.Fatalf("%s: admin %v active %d, want %v with its connection open", addr, b.Admin, b.Active, want)
		}
	}
	for _, c := range open {
		c.close(f.p)
	}
	if b := f.backend(t, A); b.Active != 0 || b.Total != 1 {
		t.Fatalf("A after its connection closed: active %d total %d", b.Active, b.Total)
	}
	if n := len(f.log.lines("backend admin state set")); n != 2 {
		t.Fatalf("%d admin state log lines, want 2", n)
	}
}

// TestSetAdminScope: a state applies to every pool holding the backend, or
// to the one named; an unknown backend or pool changes nothing; the change
// reports the previous state.
func TestSetAdminScope(t *testing.T) {
	f := newFixture(t, twoPools(nil), Options{})
	tests := []struct {
		name     string
		pool     string
		key      string
		state    pool.AdminState
		want     []AdminChange
		lanA     pool.AdminState
		defaultA pool.AdminState
	}{
		{"every pool", "", A, pool.Drain, []AdminChange{
			{Pool: "lan", Address: A, Key: A, Old: pool.Ready, New: pool.Drain},
			{Pool: "default", Address: A, Key: A, Old: pool.Ready, New: pool.Drain}}, pool.Drain, pool.Drain},
		{"one pool", "lan", A, pool.Maint, []AdminChange{{Pool: "lan", Address: A, Key: A, Old: pool.Drain, New: pool.Maint}}, pool.Maint, pool.Drain},
		{"the default pool by name", "default", A, pool.Ready, []AdminChange{{Pool: "default", Address: A, Key: A, Old: pool.Drain, New: pool.Ready}}, pool.Maint, pool.Ready},
		{"same state again", "lan", A, pool.Maint, []AdminChange{{Pool: "lan", Address: A, Key: A, Old: pool.Maint, New: pool.Maint}}, pool.Maint, pool.Ready},
		{"unknown backend", "", "127.0.0.1:1", pool.Drain, nil, pool.Maint, pool.Ready},
		{"backend not in that pool", "lan", C, pool.Drain, nil, pool.Maint, pool.Ready},
		{"unknown pool", "nope", A, pool.Drain, nil, pool.Maint, pool.Ready},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := f.p.SetAdmin(tt.pool, tt.key, tt.state, 0); !slices.Equal(got, tt.want) {
				t.Fatalf("changes %+v, want %+v", got, tt.want)
			}
			st := f.p.Status()
			if a := st.Pool("lan").Backends[0]; a.Admin != tt.lanA {
				t.Fatalf("lan's A is %v, want %v", a.Admin, tt.lanA)
			}
			if a := st.Pool("default").Backends[2]; a.Admin != tt.defaultA {
				t.Fatalf("default's A is %v, want %v", a.Admin, tt.defaultA)
			}
		})
	}
}

// TestAdminAcrossReload: a backend kept by a reload keeps its state (and a
// source_hash pool keeps mapping as if it were removed); one removed and
// added back starts ready.
func TestAdminAcrossReload(t *testing.T) {
	f := newFixture(t, service(config.SourceHash, nil, threeBackends...), Options{})
	f.p.SetAdmin("", B, pool.Drain, 0)
	reweighted := service(config.SourceHash, nil, be("127.0.0.1", 9001, 2), be("127.0.0.1", 9002, 1), be("127.0.0.1", 9003, 1))
	f.p.Apply(reweighted)
	if b := f.backend(t, B); b.Admin != pool.Drain {
		t.Fatalf("B after a reload that kept it: %v", b.Admin)
	}
	if got, _ := picked(f.p, 200, ok); slices.Contains(got, B) {
		t.Fatalf("a drained backend got connections after a reload: %v", got)
	}
	f.p.Apply(service(config.SourceHash, nil, be("127.0.0.1", 9001, 2), be("127.0.0.1", 9003, 1)))
	f.p.Apply(reweighted)
	if b := f.backend(t, B); b.Admin != pool.Ready {
		t.Fatalf("B removed and added back: %v, want ready", b.Admin)
	}
}

// TestSourceHashDrainAsIfRemoved: with a backend drained, every client of a
// source_hash pool connects where a bal without that backend configured
// sends it; back to ready, every client is where it was before.
func TestSourceHashDrainAsIfRemoved(t *testing.T) {
	five := five()
	full := newFixture(t, service(config.SourceHash, nil, five...), Options{})
	without := newFixture(t, service(config.SourceHash, nil, slices.Delete(slices.Clone(five), 2, 3)...), Options{})
	where := func(p *Policy, client string) string {
		c := connect(p, client, ok)
		defer c.close(p)
		return c.connected.Name
	}
	clients := make([]string, 400)
	before := make([]string, len(clients))
	for i := range clients {
		clients[i] = fmt.Sprintf("198.51.100.%d:%d", i%200+1, 4000+i/200)
		if i/200 > 0 {
			clients[i] = fmt.Sprintf("[2001:db8::%x]:1", i)
		}
		before[i] = where(full.p, clients[i])
	}
	full.p.SetAdmin("", C, pool.Drain, 0)
	moved := 0
	for i, cl := range clients {
		got, want := where(full.p, cl), where(without.p, cl)
		if got != want {
			t.Fatalf("client %s: drained C sends it to %s, a config without C to %s", cl, got, want)
		}
		if got != before[i] {
			moved++
			if before[i] != C {
				t.Logf("client %s of %s moved to %s (the table as if removed)", cl, before[i], got)
			}
		}
	}
	if moved == 0 {
		t.Fatal("draining C moved no client")
	}
	full.p.SetAdmin("", C, pool.Ready, 0)
	for i, cl := range clients {
		if got := where(full.p, cl); got != before[i] {
			t.Fatalf("client %s back at %s, was at %s before the drain", cl, got, before[i])
		}
	}
}

// resetRecorder is a Reset hook: it records each call and reports every
// target of open that match selects as reset.
type resetRecorder struct {
	mu    sync.Mutex
	calls []engine.CloseReason
	hits  []string
	open  []engine.Target
	done  chan struct{}
}

func newResetRecorder() *resetRecorder { return &resetRecorder{done: make(chan struct{}, 16)} }

func (r *resetRecorder) reset(_ context.Context, match func(engine.Target) bool, reason engine.CloseReason) int {
	r.mu.Lock()
	n := 0
	r.calls = append(r.calls, reason)
	for _, t := range r.open {
		if match(t) {
			n++
			r.hits = append(r.hits, t.Name)
		}
	}
	r.mu.Unlock()
	r.done <- struct{}{}
	return n
}

func (r *resetRecorder) wait(t *testing.T) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("no reset within 10 s")
	}
}

// TestCloseAfter: a close-after delay resets exactly the backend's
// connections (by its policy reference) once it runs out; a later state
// change cancels it.
func TestCloseAfter(t *testing.T) {
	rec := newResetRecorder()
	f := newFixture(t, service(config.RoundRobin, nil, threeBackends...), Options{Reset: rec.reset})
	for range 3 {
		c := connect(f.p, "192.0.2.1:1", ok)
		rec.open = append(rec.open, c.connected)
	}
	// A canceled delay: set ready (and another state) before it runs out.
	f.p.SetAdmin("", B, pool.Drain, time.Hour)
	f.p.SetAdmin("", B, pool.Ready, 0)
	f.p.SetAdmin("", C, pool.Maint, time.Hour)
	f.p.SetAdmin("", C, pool.Drain, 0)
	f.p.applyMu.Lock()
	pending := len(f.p.timers)
	f.p.applyMu.Unlock()
	if pending != 0 {
		t.Fatalf("%d close-after delays pending after the states were changed again", pending)
	}

	f.p.SetAdmin("", A, pool.Maint, time.Millisecond)
	rec.wait(t)
	rec.mu.Lock()
	calls, hits := slices.Clone(rec.calls), slices.Clone(rec.hits)
	rec.mu.Unlock()
	if !slices.Equal(calls, []engine.CloseReason{engine.CloseAdminReset}) || !slices.Equal(hits, []string{A}) {
		t.Fatalf("resets %v of %v, want one admin_reset of %s", calls, hits, A)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.p.Status().ClosedByAdmin != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("closed_by_admin %d, want 1", f.p.Status().ClosedByAdmin)
		}
		time.Sleep(time.Millisecond)
	}
	if lines := f.log.lines("connections reset: close-after delay over"); len(lines) != 1 || lines[0]["connections"] != 1.0 {
		t.Fatalf("log lines %v", lines)
	}
}

// TestOnBackendDown: with on_backend_down: close a check taking a backend
// down resets its connections (counted, logged); with keep nothing is
// reset.
func TestOnBackendDown(t *testing.T) {
	for _, mode := range []string{config.OnDownClose, config.OnDownKeep} {
		t.Run(mode, func(t *testing.T) {
			rec := newResetRecorder()
			var mu sync.Mutex
			deadB := false
			dial := func(_ context.Context, _, addr string) (net.Conn, error) {
				mu.Lock()
				defer mu.Unlock()
				if deadB && addr == B {
					return nil, errRefused
				}
				c1, c2 := net.Pipe()
				c2.Close()
				return c1, nil
			}
			s := service(config.RoundRobin, func(r *config.Runtime) { r.HealthCheckFailThreshold = 1 }, threeBackends...)
			s.HealthCheck = config.HealthCheck{Type: config.CheckTCP}
			s.OnBackendDown = mode
			f := newFixture(t, s, Options{Reset: rec.reset, HealthDial: dial})
			for range 3 {
				rec.open = append(rec.open, connect(f.p, "192.0.2.1:1", ok).connected)
			}
			f.p.CheckNow(t.Context())
			mu.Lock()
			deadB = true
			mu.Unlock()
			f.p.CheckNow(t.Context())
			if b := f.backend(t, B); b.Reachable || b.CheckError == "" {
				t.Fatalf("B after a refused check: reachable %v error %q", b.Reachable, b.CheckError)
			}
			if mode == config.OnDownKeep {
				// The round calls OnDown synchronously: with keep there is
				// none, so nothing can reset later either.
				rec.mu.Lock()
				defer rec.mu.Unlock()
				if f.p.HealthRound().OnDown != nil || len(rec.calls) != 0 {
					t.Fatalf("on_backend_down: keep reset connections (%v)", rec.calls)
				}
				return
			}
			rec.wait(t)
			rec.mu.Lock()
			calls, hits := slices.Clone(rec.calls), slices.Clone(rec.hits)
			rec.mu.Unlock()
			if !slices.Equal(calls, []engine.CloseReason{engine.CloseBackendDown}) || !slices.Equal(hits, []string{B}) {
				t.Fatalf("resets %v of %v, want one backend_down of %s", calls, hits, B)
			}
			deadline := time.Now().Add(5 * time.Second)
			for f.p.Status().ClosedOnDown != 1 {
				if time.Now().After(deadline) {
					t.Fatalf("closed_on_down %d, want 1", f.p.Status().ClosedOnDown)
				}
				time.Sleep(time.Millisecond)
			}
			if lines := f.log.lines("connections reset: backend down"); len(lines) != 1 || lines[0]["reason"] != "refused" {
				t.Fatalf("log lines %v", lines)
			}
		})
	}
}

// TestMaintPausesProbes: a backend in maintenance is not dialled by health
// rounds; its status keeps the last check error it had.
func TestMaintPausesProbes(t *testing.T) {
	var mu sync.Mutex
	dialed := map[string]int{}
	dial := func(_ context.Context, _, addr string) (net.Conn, error) {
		mu.Lock()
		dialed[addr]++
		mu.Unlock()
		return nil, errors.Join(errRefused)
	}
	f := newFixture(t, service(config.RoundRobin, nil, threeBackends...), Options{HealthDial: dial})
	f.p.SetAdmin("", B, pool.Maint, 0)
	f.p.CheckNow(t.Context())
	f.p.CheckNow(t.Context())
	mu.Lock()
	got := maps(dialed)
	mu.Unlock()
	if got[B] != 0 || got[A] != 2 || got[C] != 2 {
		t.Fatalf("dials %v: B is in maintenance", got)
	}
	if b := f.backend(t, B); b.Checked || b.CheckError != "" {
		t.Fatalf("B in maintenance was fed: %+v", b)
	}
	if a := f.backend(t, A); a.CheckError == "" {
		t.Fatal("A's refused checks left no check error")
	}
}

// TestRoundCarriesPoolChecks: the health round hands each probed backend
// its pool's check.
func TestRoundCarriesPoolChecks(t *testing.T) {
	s := twoPools(nil)
	httpCheck := config.HealthCheck{Type: config.CheckHTTP, HTTPPath: "/ready", HTTPStatus: []config.StatusRange{{Low: 200, High: 204}}}
	s.Routes[0].HealthCheck = httpCheck
	p := New(s, Options{})
	r := p.HealthRound()
	if len(r.Checks) != len(r.Backends) {
		t.Fatalf("%d checks for %d backends", len(r.Checks), len(r.Backends))
	}
	for i, b := range r.Backends {
		want := config.HealthCheck{Type: config.CheckTCP}
		if b.Pool() == "lan" {
			want = httpCheck
		}
		if r.Checks[i].String() != want.String() {
			t.Errorf("%s/%s is checked with %s, want %s", b.Pool(), b.Name(), r.Checks[i], want)
		}
	}
}
