// Package policy is bal's engine.Policy for one service: the one object a
// service's engines talk to. It composes access control (allow/deny, the
// per-source table), admission against max_concurrent_connections, routing
// to the service's pools (one per route plus the default pool, each with
// its own backends, balancer, cooldowns and failover), passive and active
// health checking (a server listed in several pools is probed once a
// round), protection mode, the rejection counters and the access log, and
// it applies reloads live (docs/design.md#reload).
//
// The hot path — Admit, Route, Pick, DialResult, Closed — never blocks,
// takes no lock except protection mode's short mutex on failures and a
// per-source shard's when a per-source limit is set, and allocates nothing
// in steady state (per-connection state is pooled; everything a connection
// is judged by is compiled once per config). A service without routes or
// access rules pays nothing for them. The runtime calls New once per
// service, Run (or RunHealth and friends) in the background, Apply on every
// reload and Status for `bal status` and metrics.
//
// On a UDP service a connection is a flow (docs/udp.md): admission counts
// flows against max_udp_flows, a flow's connect only counts it on its
// backend, its first reply (Replied) is the backend's success, and an ICMP
// port unreachable is a refused connect. A UDP pool without an active check
// is judged by its flows alone: a backend marked down is still picked once
// its cooldown ends.
package policy
