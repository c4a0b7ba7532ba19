// Package balance holds bal's balancing methods (docs/design.md#balancing-methods) as pure code:
// each is a small struct behind the one-method Balancer interface, built from
// the backends' keys and weights of one pool and asked, per pick, which index
// to use among those a View says are eligible now.
//
//   - RoundRobin: nginx's smooth weighted round robin, precomputed for one
//     full cycle and walked with an atomic cursor; ineligible backends are
//     skipped without disturbing the others' order.
//   - LeastConnections: fewest active connections relative to weight, ties
//     broken in weighted round-robin order.
//   - RandomTwo: power of two random choices, both drawn in proportion to
//     weight, the one with fewer active connections per weight wins.
//   - SourceHash: Maglev consistent hashing of the client IP with weights,
//     deterministic from the backend keys, falling through to weighted
//     rendezvous hashing over the eligible backends.
//
// Every Pick is safe for concurrent use, lock-free and allocates nothing.
package balance
