// Package health runs bal's active health checks (docs/design.md#health-checks): every
// backend of the current config is checked in parallel with a plain TCP
// connect (closed at once) within health_check_timeout, the first round at
// start-up and then every health_check_interval, rounds never overlapping.
//
// Each round reads the current settings and backend set from a Source, so
// reloads apply live. Hostname backends are resolved at every check (the
// addresses are cached in the pool for the data path, which never does DNS);
// every resolved address is tried in order; a DNS failure counts as a failed
// check. Results feed the rise/fall machine in package pool, which proxy
// connect outcomes feed too (passive checking); transitions are logged at
// warn (down) and info (up) by LogChange.
package health
