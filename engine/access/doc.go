// Package access holds the data structures a service consults for every
// accepted connection before anything else is done for it: who may connect
// (allow and deny lists) and how much one source may take (concurrent
// connections and a connection rate per source). They are pure — no
// sockets, no configuration, no logging — safe for concurrent use by every
// event loop, and they do not allocate on the data path.
//
// # Address rules
//
// ParsePrefixes reads a rule list ("10.0.0.0/8", "2001:db8::/32", a bare
// address as a /32 or /128) and NewPrefixSet turns it into a PrefixSet: the
// prefixes merged into sorted disjoint ranges per family, looked up by
// binary search (O(log n); 10,000 prefixes take 14 steps). An IPv4-mapped
// client (::ffff:a.b.c.d, as a dual-stack listener reports an IPv4 client)
// is judged as the IPv4 address, against the IPv4 rules only, so a client
// gets the same answer from a dual-stack and an IPv4-only listener.
//
// # Per-source table
//
// Sources tracks, for each source, its open connections and a token bucket.
// A source is an IPv4 address or an IPv6 /64, the smallest block a network
// hands out, so that a host cannot dodge its limit by picking new interface
// identifiers (an IPv4-mapped address is its IPv4 address). The table is
// split into up to 64 shards by a keyed hash of the source, each with its
// own mutex, its share of the bound, a slab of fixed-size entries, an
// open-addressing index at most half full, and an intrusive list of the
// idle entries in the order they were last seen (an attempt, admitted or
// refused, or the end of the last open connection). Eviction takes the
// least recently seen idle entry of the shard, so "least recently seen" is
// exact within a shard and close to it over the table.
//
// An entry with an open connection is never evicted: its count would be
// lost, the source could then exceed its limit, and a late Release would
// land on whatever reused the slot. When a shard's share is taken entirely
// by sources with open connections, a new source is still admitted and
// tracked above the bound; such extra entries leave as soon as their last
// connection ends. The table thus holds at most size entries plus, at a
// peak, one per source with an open connection — bounded by the open
// connections themselves, each of which already costs a socket and buffers
// far larger than an entry. The alternatives were worse: refusing new
// sources while the table is full lets anyone holding one connection from
// each of size addresses (an IPv6 /48 has 65,536 /64s) lock every new client
// out, and admitting them untracked lets those sources ignore their limit.
// Tickets carry the slot's generation, so a ticket of an evicted or reused
// entry releases nothing.
//
// Evicting an idle entry forgets its bucket: the source comes back with a
// full burst, which needs size more recently seen sources in its shard
// first — a flood from many addresses can refresh a limited source's burst,
// not lift its limit.
//
// Limits and rates are arguments of every Admit, so a reload applies new
// values to the next connection while counts and buckets carry over (a
// bucket above a lowered burst is cut to it). Resize changes the bound in
// place.
//
// # Memory
//
// An entry is 48 bytes in its slab plus 4 bytes of index bucket at most
// half full: 56 bytes, reserved in full by NewSources. Measured with
// runtime.MemStats: 65,536 entries (the default source_table_size) take
// 3.68 MB, 56.2 bytes per entry, and churning ten times as many sources
// through the full table adds nothing.
package access
