// Package protect is bal's protection mode (docs/design.md#protection-mode) as a pure state
// machine fed with proxy connect outcomes and an injected clock.
//
// Protection turns on when protection_trigger_threshold timeout/refused
// connect failures fall within a sliding protection_window (reason
// timeout_or_refused_storm) or when one client exhausts every backend
// (reason all_backends_unavailable); the reason is always the latest
// trigger. It turns off after protection_stable_success_threshold consecutive
// successful connects, or once a full window passed with no failure at all,
// checked on the next event and by Tick, so it never stays on when idle.
//
// Machine is the pure machine (not safe for concurrent use); Guard wraps it
// for the data path: lock-free reads of the state, a lock-free fast path for
// successes while off, and every transition handed to a callback.
package protect
