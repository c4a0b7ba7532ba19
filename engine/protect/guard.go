package protect

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/bal-lb/bal/engine"
)

// Guard is a Machine safe for concurrent use by the data path. Reads (On,
// State) are lock-free, and so is recording a success while protection is
// off (the common case); everything else takes a short mutex.
type Guard struct {
	mu     sync.Mutex
	m      *Machine
	notify func(Transition)

	on     atomic.Bool
	state  atomic.Pointer[State]
	quiet  atomic.Int64 // UnixNano of the quiet-window deadline while on
	window atomic.Int64 // the window, to sanity-check the deadline
	events atomic.Uint64
}

// NewGuard returns a guard in the off state. notify (may be nil) receives
// every transition in order; it is called with the guard's lock held, so it
// must be quick (e.g. one log line) and must not call the guard.
func NewGuard(cfg Config, notify func(Transition)) *Guard {
	g := &Guard{m: NewMachine(cfg), notify: notify}
	g.state.Store(&State{})
	return g
}

// On reports whether protection is on.
func (g *Guard) On() bool { return g.on.Load() }

// State returns the current state.
func (g *Guard) State() State { return *g.state.Load() }

// Transitions counts the transitions so far.
func (g *Guard) Transitions() uint64 { return g.events.Load() }

// SetConfig changes the settings live.
func (g *Guard) SetConfig(c Config) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.m.SetConfig(c)
	g.publish(Outcome{})
}

// Config returns the settings in force.
func (g *Guard) Config() Config {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.m.Config()
}

// Success records a successful proxy connect.
func (g *Guard) Success(now time.Time) {
	if !g.on.Load() {
		return // nothing counts while off
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.publish(g.m.Success(now))
}

// Failure records a failed proxy connect.
func (g *Guard) Failure(now time.Time, r engine.FailReason) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.publish(g.m.Failure(now, r))
}

// Exhausted records a client connection that exhausted every backend.
func (g *Guard) Exhausted(now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.publish(g.m.Exhausted(now))
}

// Tick applies the quiet-window exit. It is cheap when nothing is due, so
// callers may call it on every pick and from a periodic timer.
func (g *Guard) Tick(now time.Time) {
	if !g.on.Load() {
		return
	}
	// Skip the lock while the deadline is ahead — but only by at most one
	// window: a wall clock that jumped makes the machine (which measures
	// with the monotonic clock) decide.
	if d := g.quiet.Load() - now.UnixNano(); d > 0 && d <= g.window.Load() {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.publish(g.m.Tick(now))
}

// publish stores the machine's state for lock-free readers and hands the
// transitions to notify. Called with mu held.
func (g *Guard) publish(o Outcome) {
	s := g.m.State()
	if *g.state.Load() != s {
		ns := s // allocate only on a change
		g.state.Store(&ns)
	}
	g.on.Store(s.On)
	g.window.Store(int64(g.m.Config().Window))
	if s.On {
		g.quiet.Store(g.m.QuietDeadline().UnixNano())
	}
	for i := range o.Len() {
		g.events.Add(1)
		if g.notify != nil {
			g.notify(o.At(i))
		}
	}
}
