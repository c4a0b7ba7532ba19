package pool

// Health is the value of the rise/fall machine of one backend. The zero value
// is "unknown": never observed, optimistically eligible for traffic.
//
// Rules (Observe):
//   - Unknown: the first observation decides at once (a success makes it up, a
//     failure down), like HAProxy's default init-state "up": a backend is
//     served from start-up or from the reload that added it, and its first
//     health check or connect can take it out immediately.
//   - Up: it turns down after fall consecutive failures.
//   - Down: it turns up after rise consecutive successes.
//
// A success clears the failure run and a failure clears the success run.
type Health struct {
	Known     bool   // at least one observation was made
	Up        bool   // eligible for phase-1 picks (true while unknown)
	Fails     uint32 // consecutive failures, saturating
	Successes uint32 // consecutive successes, saturating
}

// Change is the transition an observation caused.
type Change int8

// Transitions.
const (
	ChangeNone Change = iota
	ChangeUp          // down → up
	ChangeDown        // up or unknown → down
)

// String names the change for logs and tests.
func (c Change) String() string {
	switch c {
	case ChangeUp:
		return "up"
	case ChangeDown:
		return "down"
	default:
		return "none"
	}
}

// Unknown is the initial state of a new backend.
var Unknown = Health{Up: true}

const maxRun = 1<<31 - 1

// Observe returns the state after one observation (ok = check or connect
// succeeded) with thresholds rise and fall (values below 1 count as 1), and
// the transition it caused.
func (h Health) Observe(ok bool, rise, fall int) (Health, Change) {
	rise, fall = max(rise, 1), max(fall, 1)
	wasKnown := h.Known
	h.Known = true
	if ok {
		h.Fails = 0
		if h.Successes < maxRun {
			h.Successes++
		}
		if !h.Up && int64(h.Successes) >= int64(rise) {
			h.Up = true
			return h, ChangeUp
		}
		return h, ChangeNone
	}
	h.Successes = 0
	if h.Fails < maxRun {
		h.Fails++
	}
	if h.Up && (!wasKnown || int64(h.Fails) >= int64(fall)) {
		h.Up = false
		return h, ChangeDown
	}
	return h, ChangeNone
}

// Packed layout: bit 63 Known, bit 62 Up, bits 31..61 Successes, 0..30 Fails.
const (
	bitKnown  = uint64(1) << 63
	bitUp     = uint64(1) << 62
	runMask   = uint64(maxRun)
	succShift = 31
)

func (h Health) pack() uint64 {
	var v uint64
	if h.Known {
		v |= bitKnown
	}
	if h.Up {
		v |= bitUp
	}
	return v | (uint64(h.Successes)&runMask)<<succShift | uint64(h.Fails)&runMask
}

func unpack(v uint64) Health {
	return Health{
		Known:     v&bitKnown != 0,
		Up:        v&bitUp != 0,
		Successes: uint32(v >> succShift & runMask),
		Fails:     uint32(v & runMask),
	}
}
