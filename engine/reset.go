package engine

import "context"

// Close reasons of connections reset on purpose while they were relaying
// (Resetter).
const (
	// CloseAdminReset: an operator took the backend out (drain or maint
	// with a close-after delay) and the delay ran out.
	CloseAdminReset CloseReason = "admin_reset"
	// CloseBackendDown: health checks marked the backend down and its
	// service closes the connections of a dead backend (on_backend_down:
	// close).
	CloseBackendDown CloseReason = "backend_down"
)

// Resetter is implemented by engines that can reset, on purpose, the
// connections they relay to some backends (both TCP engines do; the server
// asserts it and logs once when an engine cannot). It is a separate
// interface from Engine so that engines without relayed streams (UDP
// flows) need not implement it.
type Resetter interface {
	// Reset resets (SO_LINGER 0, both sides) every connection whose
	// connected backend satisfies match, reporting each to the policy's
	// Closed with reason, and returns how many it reset. Connections still
	// connecting are left alone: match sees only ConnInfo.Backend of a
	// connection that reached its backend. match may be called on any
	// goroutine (an event loop's, or the caller's), from several at once: it
	// must be cheap and goroutine-safe. Reset returns once every event loop has run it, or
	// when ctx is done (the count is then what was reset so far). An engine
	// that is draining or stopped resets nothing and returns 0: its
	// connections end with the drain.
	Reset(ctx context.Context, match func(Target) bool, reason CloseReason) int
}
