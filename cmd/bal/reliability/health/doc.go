// Package health holds bal's black-box reliability tests for health checks,
// failover, protection mode and DNS re-resolution (research note
// reliability-anchors.md §4, tests 9–14): each starts the real binary, real
// backends (some in their own processes), real clients, and makes faults
// with real mechanisms — SIGKILL/SIGSTOP, closed listeners, a backend that
// goes silent, nftables rules and a DNS responder inside network namespaces
// the test creates. The fast variants run in `make test`; the long ones
// (baltest.Soak) in `make soak`, and every test records its figure with
// baltest.Record.
package health
