// Package limits reads the operating-system limits that bound what one bal
// can serve — RLIMIT_NOFILE and the kernel's listen backlog cap (somaxconn)
// — and knows how many descriptors each engine holds per connection, so
// that `bal doctor` can compare them with max_concurrent_connections and
// tcp_backlog.
package limits
