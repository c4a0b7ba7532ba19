// Package policy is bal's engine.Policy: the one object an engine talks to.
// It composes the backend pool, the balancing method, connect failover with
// cooldowns, passive and active health checking,
// protection mode (§3.5), admission control and the access log, and it
// applies reloads live (§3.6).
//
// The hot path — Admit, Pick, DialResult, Closed — never blocks, takes no
// lock except protection mode's short mutex on failures, and allocates
// nothing in steady state (per-connection failover state is pooled). The
// runtime calls New once, Run (or RunHealth and friends) in the background,
// Apply on every reload and Status for `bal status` and metrics.
package policy
