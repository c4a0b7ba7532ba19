// Package limits reads the operating-system limits that bound what one bal
// can serve — RLIMIT_NOFILE, the number of open descriptors and the kernel's
// listen backlog cap (somaxconn) — and holds the one descriptor headroom
// formula: each engine states its Cost (descriptors per connection, spare),
// the engines keep Cost.Reserve free at admission, and `bal doctor` compares
// Cost.Needed with RLIMIT_NOFILE for max_concurrent_connections.
package limits
