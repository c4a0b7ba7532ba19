// Package pool holds the live state of bal's backends: one Backend per
// configured backend with lock-free counters (active and total connections,
// connect failures by reason), the rise/fall health machine shared by active
// health checks and passive proxy outcomes, the failover streak and cooldown,
// the weight and the resolved addresses.
//
// A Pool is the ordered backend list of one pool (a route's, or a service's
// default pool) in one config snapshot. Backends are keyed by
// config.Backend.Key(); building the Pool of a reloaded snapshot from the
// same pool's previous one keeps the same *Backend (and so its health,
// counters, cooldown and open connections) for every key that is still
// configured. A server listed in two pools is two Backends, one per pool:
// each pool has its own health, counters and cooldown.
//
// Everything here is safe for concurrent use and allocation-free on the hot
// path. Times that decide behaviour (cooldowns) are int64 nanoseconds on a
// monotonic clock chosen by the caller; times that are only reported (last
// check) are wall-clock time.Time values.
package pool
