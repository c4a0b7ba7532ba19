package enginetest

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
)

// Policy is a scripted engine.Policy: round robin over Targets, each
// connection tries every target once (starting at the round-robin position),
// optional admission limit. It records every dial and close, and counts
// every refused connection by reason, like the real policy.
type Policy struct {
	// MaxConns > 0 makes Admit refuse beyond that many open connections.
	MaxConns int64
	// OnAdmit, when set, runs at the start of every Admit (tests use it to
	// hold an engine's accept path).
	OnAdmit func(*engine.ConnInfo)
	// OnRoute, when set, decides Route (tests route by c.Hello); nil routes
	// every connection.
	OnRoute func(*engine.ConnInfo) bool
	// Routes, when set, is Route's pool choice: Pick then offers only the
	// targets it returns (round robin, each once); false means no route.
	// It runs after OnRoute.
	Routes func(*engine.ConnInfo) ([]netip.AddrPort, bool)

	mu      sync.Mutex
	targets []netip.AddrPort
	dials   []Dial

	rr       atomic.Uint64
	active   atomic.Int64
	admitted atomic.Int64
	routed   atomic.Int64
	rejected map[engine.RejectReason]int64 // under mu
	closed   chan Closed
	replies  replies // UDP flows' first replies (FlowObserver)
}

// Dial is one recorded connect attempt.
type Dial struct {
	Target netip.AddrPort
	Err    error
	Reason engine.FailReason // meaningful when Err != nil
}

// Closed is one recorded Closed call.
type Closed struct {
	Conn engine.ConnInfo
	Info engine.CloseInfo
}

var _ engine.Policy = (*Policy)(nil)

// NewPolicy returns a policy over targets.
func NewPolicy(targets ...netip.AddrPort) *Policy {
	return &Policy{targets: targets, rejected: map[engine.RejectReason]int64{}, closed: make(chan Closed, 1<<14)}
}

// SetTargets replaces the target list.
func (p *Policy) SetTargets(targets ...netip.AddrPort) {
	p.mu.Lock()
	p.targets = targets
	p.mu.Unlock()
}

// Admit implements engine.Policy.
func (p *Policy) Admit(c *engine.ConnInfo) bool {
	if p.OnAdmit != nil {
		p.OnAdmit(c)
	}
	if n := p.active.Add(1); p.MaxConns > 0 && n > p.MaxConns {
		p.active.Add(-1)
		p.count(engine.RejectLimit)
		return false
	}
	p.admitted.Add(1)
	return true
}

// Refused implements engine.Policy.
func (p *Policy) Refused(c *engine.ConnInfo, r engine.RejectReason) { p.count(r) }

// Route implements engine.Policy: OnRoute and Routes decide; a connection
// they refuse is counted as RejectNoRoute.
func (p *Policy) Route(c *engine.ConnInfo) bool {
	p.routed.Add(1)
	if p.OnRoute != nil && !p.OnRoute(c) {
		p.count(engine.RejectNoRoute)
		return false
	}
	if p.Routes != nil {
		targets, ok := p.Routes(c)
		if !ok {
			p.count(engine.RejectNoRoute)
			return false
		}
		c.PolicyState = &routed{targets: targets}
	}
	return true
}

// routed is the PolicyState of a connection Routes chose a pool for.
type routed struct {
	targets []netip.AddrPort
	start   int
}

func (p *Policy) count(r engine.RejectReason) {
	p.mu.Lock()
	p.rejected[r]++
	p.mu.Unlock()
}

// Pick implements engine.Policy.
func (p *Policy) Pick(c *engine.ConnInfo, attempt int) (engine.Target, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	targets := p.targets
	r, _ := c.PolicyState.(*routed)
	if r != nil {
		targets = r.targets
	}
	n := len(targets)
	if attempt >= n {
		return engine.Target{}, false
	}
	if attempt == 0 {
		if r != nil {
			r.start = int(p.rr.Add(1) - 1)
		} else {
			c.PolicyState = int(p.rr.Add(1) - 1)
		}
	}
	start, _ := c.PolicyState.(int)
	if r != nil {
		start = r.start
	}
	a := targets[(start+attempt)%n]
	return engine.Target{Addr: a, Name: a.String()}, true
}

// DialResult implements engine.Policy.
func (p *Policy) DialResult(c *engine.ConnInfo, t engine.Target, err error, rtt time.Duration) {
	p.mu.Lock()
	p.dials = append(p.dials, Dial{Target: t.Addr, Err: err, Reason: engine.Classify(err)})
	p.mu.Unlock()
}

// Closed implements engine.Policy.
func (p *Policy) Closed(c *engine.ConnInfo, s engine.CloseInfo) {
	p.active.Add(-1)
	select {
	case p.closed <- Closed{Conn: *c, Info: s}:
	default:
	}
}

// Dials returns the recorded connect attempts.
func (p *Policy) Dials() []Dial {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Dial(nil), p.dials...)
}

// Active is the number of admitted connections not yet Closed.
func (p *Policy) Active() int64 { return p.active.Load() }

// Routed is the number of Route calls.
func (p *Policy) Routed() int64 { return p.routed.Load() }

// Admitted is the number of Admit calls that returned true.
func (p *Policy) Admitted() int64 { return p.admitted.Load() }

// Rejected is the number of refused connections: Admit calls that returned
// false and connections the engine reported with Refused.
func (p *Policy) Rejected() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for _, c := range p.rejected {
		n += c
	}
	return n
}

// RejectedBy is the number of refused connections for reason r.
func (p *Policy) RejectedBy(r engine.RejectReason) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rejected[r]
}

// WaitClosed returns the next Closed record, failing t after timeout.
func (p *Policy) WaitClosed(t testing.TB, timeout time.Duration) Closed {
	t.Helper()
	select {
	case c := <-p.closed:
		return c
	case <-time.After(timeout):
		t.Fatalf("no connection reported Closed within %v", timeout)
		return Closed{}
	}
}
