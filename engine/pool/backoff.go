package pool

import "time"

// Backoff holds the failover settings that size a cooldown (docs/design.md#connect-and-failover).
type Backoff struct {
	Initial  time.Duration // failover_backoff_initial_ms
	Max      time.Duration // failover_backoff_max_ms
	Cooldown time.Duration // backend_cooldown_ms (the floor)
}

// Doubled returns the settings in force while protection mode is on.
func (k Backoff) Doubled() Backoff {
	return Backoff{Initial: sat2(k.Initial), Max: sat2(k.Max), Cooldown: sat2(k.Cooldown)}
}

func sat2(d time.Duration) time.Duration {
	if d > maxDuration/2 {
		return maxDuration
	}
	return d * 2
}

const maxDuration = time.Duration(1<<63 - 1)

// Duration is the cooldown after the streak-th consecutive failed connect
// (streak ≥ 1): max(min(Initial·2^(streak−1), Max), Cooldown). The doubling
// saturates instead of overflowing, so any streak is safe.
func (k Backoff) Duration(streak uint32) time.Duration {
	d := max(k.Initial, 0)
	if e := max(streak, 1) - 1; e > 0 && d > 0 {
		if e >= 62 || d > maxDuration>>e {
			d = maxDuration
		} else {
			d <<= e
		}
	}
	return max(min(d, k.Max), k.Cooldown)
}
