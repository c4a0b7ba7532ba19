package protect

import (
	"time"

	"github.com/bal-lb/bal/engine"
)

// Reason says why protection is on; empty when off.
type Reason string

// Reasons, as shown by status, doctor and metrics.
const (
	ReasonNone      Reason = ""
	ReasonStorm     Reason = "timeout_or_refused_storm"
	ReasonExhausted Reason = "all_backends_unavailable"
)

// Cause is the event that caused a transition.
type Cause string

// Causes, as logged.
const (
	CauseStorm     Cause = "timeout_or_refused_storm" // threshold failures within the window
	CauseExhausted Cause = "all_backends_unavailable" // a client exhausted every backend
	CauseStable    Cause = "stable_successes"         // enough consecutive successes
	CauseQuiet     Cause = "quiet_window"             // a full window without failure
)

// Config holds the protection settings; they may change at any time.
type Config struct {
	Threshold       int           // protection_trigger_threshold (< 1 counts as 1)
	Window          time.Duration // protection_window_ms (≤ 0 counts as 1 ns)
	StableSuccesses int           // protection_stable_success_threshold (< 1 counts as 1)
}

// State is the protection state.
type State struct {
	On     bool
	Reason Reason    // ReasonNone when off
	Since  time.Time // time of the last transition; zero before any
}

// Transition is one change of state: turning on, changing the reason while
// on, or turning off.
type Transition struct {
	On       bool      // the state after the transition
	Reason   Reason    // the reason after (ReasonNone when it turned off)
	Previous Reason    // the reason before (ReasonNone when it was off)
	Cause    Cause     // what caused it
	At       time.Time // when
	Failures int       // timeout/refused failures in the window at that moment
}

// Outcome lists the transitions (at most two: a quiet-window exit noticed
// on this event, then the event's own) one event caused, oldest first.
type Outcome struct {
	n  int
	ts [2]Transition
}

// Len is the number of transitions.
func (o *Outcome) Len() int { return o.n }

// At returns the i-th transition.
func (o *Outcome) At(i int) Transition { return o.ts[i] }

func (o *Outcome) add(t Transition) {
	if o.n < len(o.ts) {
		o.ts[o.n] = t
		o.n++
	}
}

// Machine is the protection state machine. The zero value is unusable; use
// NewMachine. It is not safe for concurrent use (see Guard).
type Machine struct {
	cfg Config

	ring  []time.Time // the latest timeout/refused failures, at most Threshold
	head  int         // index of the oldest entry
	count int

	on        bool
	reason    Reason
	since     time.Time
	successes int       // consecutive successes while on
	lastEvent time.Time // latest failure (any reason) or trigger, for the quiet exit

	// Storm episodes: a run of timeout/refused failures with no gap of a
	// full window. The count in the sliding window dips below the threshold
	// and climbs back many times during one episode; only the first
	// crossing of an episode is a trigger while protection is on.
	lastStorm time.Time // latest timeout/refused failure
	episode   uint64    // the current episode (starts at 1)
	triggered uint64    // the episode whose crossing last turned on or set the reason
}

// NewMachine returns a machine in the off state.
func NewMachine(cfg Config) *Machine {
	m := &Machine{}
	m.SetConfig(cfg)
	return m
}

func normalize(c Config) Config {
	c.Threshold = max(c.Threshold, 1)
	c.StableSuccesses = max(c.StableSuccesses, 1)
	c.Window = max(c.Window, 1)
	return c
}

// Config returns the settings in force.
func (m *Machine) Config() Config { return m.cfg }

// SetConfig changes the settings (on reload). The most recent failures are
// kept, so a storm in progress is still counted against the new threshold.
func (m *Machine) SetConfig(c Config) {
	c = normalize(c)
	if c.Threshold != len(m.ring) {
		ring := make([]time.Time, c.Threshold)
		keep := min(m.count, c.Threshold)
		for i := range keep {
			ring[i] = m.ring[(m.head+m.count-keep+i)%len(m.ring)]
		}
		m.ring, m.head, m.count = ring, 0, keep
	}
	m.cfg = c
}

// State returns the current state (without applying a pending quiet exit;
// call Tick first for that).
func (m *Machine) State() State { return State{On: m.on, Reason: m.reason, Since: m.since} }

// stormy reports, in O(1), whether Threshold failures fall within the window
// ending at now: the ring holds exactly the latest Threshold failures, so
// that is "the ring is full and its oldest entry is inside the window".
func (m *Machine) stormy(now time.Time) bool {
	return m.count == len(m.ring) && now.Sub(m.ring[m.head]) < m.cfg.Window
}

// inWindow counts the recorded failures within the window ending at now
// (O(Threshold); only for reporting a transition).
func (m *Machine) inWindow(now time.Time) int {
	n := 0
	for i := range m.count {
		if now.Sub(m.ring[(m.head+i)%len(m.ring)]) < m.cfg.Window {
			n++
		}
	}
	return n
}

// Tick applies the quiet-window exit: protection that has been on for a full
// window without any failure or trigger turns off. Call it periodically, so
// protection ends even without traffic; every event calls it first too.
func (m *Machine) Tick(now time.Time) Outcome {
	var o Outcome
	m.tick(now, &o)
	return o
}

func (m *Machine) tick(now time.Time, o *Outcome) {
	if m.on && now.Sub(m.lastEvent) >= m.cfg.Window {
		m.turnOff(now, CauseQuiet, o)
	}
}

// QuietDeadline is the time at which Tick turns protection off if nothing
// happens before; zero when off.
func (m *Machine) QuietDeadline() time.Time {
	if !m.on {
		return time.Time{}
	}
	return m.lastEvent.Add(m.cfg.Window)
}

// Success records a successful proxy connect.
func (m *Machine) Success(now time.Time) Outcome {
	var o Outcome
	m.tick(now, &o)
	if !m.on {
		return o
	}
	m.successes++
	if m.successes >= m.cfg.StableSuccesses {
		m.turnOff(now, CauseStable, &o)
	}
	return o
}

// Failure records a failed proxy connect. Timeout and refused failures count
// toward a storm; every failure breaks the run of successes and restarts the
// quiet window.
func (m *Machine) Failure(now time.Time, r engine.FailReason) Outcome {
	var o Outcome
	m.tick(now, &o)
	m.successes = 0
	m.lastEvent = now
	if r != engine.FailTimeout && r != engine.FailRefused {
		return o
	}
	if m.episode == 0 || now.Sub(m.lastStorm) >= m.cfg.Window {
		m.episode++
	}
	m.lastStorm = now
	before := m.stormy(now)
	if m.count == len(m.ring) {
		m.head = (m.head + 1) % len(m.ring)
		m.count--
	}
	m.ring[(m.head+m.count)%len(m.ring)] = now
	m.count++
	// A storm triggers when the count reaches the threshold from below
	// while off, or for the first time in its episode while on; a storm that
	// simply goes on — even one whose count dipped under the threshold and
	// climbed back — is not a new trigger (it would flip the reason back and
	// forth with every exhausted client).
	if m.stormy(now) && (!m.on || (!before && m.triggered != m.episode)) {
		m.triggered = m.episode
		m.turnOn(now, ReasonStorm, CauseStorm, m.count, &o)
	}
	return o
}

// Exhausted records that one client connection exhausted every backend.
func (m *Machine) Exhausted(now time.Time) Outcome {
	var o Outcome
	m.tick(now, &o)
	m.successes = 0
	m.lastEvent = now
	m.turnOn(now, ReasonExhausted, CauseExhausted, m.inWindow(now), &o)
	return o
}

func (m *Machine) turnOn(now time.Time, r Reason, c Cause, failures int, o *Outcome) {
	if m.on && m.reason == r {
		return
	}
	prev := m.reason
	m.on, m.reason, m.since, m.successes, m.lastEvent = true, r, now, 0, now
	o.add(Transition{On: true, Reason: r, Previous: prev, Cause: c, At: now, Failures: failures})
}

// turnOff ends protection and forgets the failures seen, so the next storm
// is counted from scratch (hysteresis).
func (m *Machine) turnOff(now time.Time, c Cause, o *Outcome) {
	failures := m.inWindow(now)
	prev := m.reason
	m.on, m.reason, m.since, m.successes = false, ReasonNone, now, 0
	m.head, m.count = 0, 0
	o.add(Transition{On: false, Previous: prev, Cause: c, At: now, Failures: failures})
}
