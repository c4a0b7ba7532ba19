package access

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is an injected clock the test moves by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func mustSources(t testing.TB, size int, now func() time.Time) *Sources {
	t.Helper()
	s, err := NewSources(size, now)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustRate(t testing.TB, s string) Rate {
	t.Helper()
	r, err := ParseRate(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// try admits one connection from a and releases it at once, so that only
// the rate decides.
func try(s *Sources, a netip.Addr, limit int, r Rate) Verdict {
	tk, v := s.Admit(a, limit, r)
	s.Release(tk)
	return v
}

// tries makes n attempts with try and lists the verdicts.
func tries(s *Sources, a netip.Addr, limit int, r Rate, n int) string {
	var out []string
	for range n {
		out = append(out, try(s, a, limit, r).String())
	}
	return strings.Join(out, " ")
}

// v4 is the i-th address of 10.0.0.0/8.
func v4(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// tracked reports whether a's source has an entry.
func tracked(s *Sources, a netip.Addr) bool {
	k, _ := keyOf(a)
	si, h := s.hash(k)
	sh := &s.shards[si]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.find(k, h) != none
}

// checkConsistent walks every shard and fails on a broken invariant: the
// idle list holds exactly the entries with no open connection, each linked
// both ways; every entry in use is in the hash table once and found from
// its key; free slots are free; a shard over its share has no idle entry.
func checkConsistent(t *testing.T, s *Sources) {
	t.Helper()
	for si := range s.shards {
		sh := &s.shards[si]
		sh.mu.Lock()
		idle, prev := 0, int32(none)
		for i := sh.head; i != none; i = sh.slab[i].next {
			e := &sh.slab[i]
			if e.prev != prev || e.active != 0 || e.gen == 0 {
				t.Errorf("shard %d slot %d: idle entry %+v (prev want %d)", si, i, *e, prev)
			}
			prev = i
			idle++
			if idle > len(sh.slab) {
				t.Fatalf("shard %d: idle list loops", si)
			}
		}
		if sh.tail != prev || idle != sh.idle {
			t.Errorf("shard %d: tail %d want %d, idle %d counted %d", si, sh.tail, prev, sh.idle, idle)
		}
		indexed, active := 0, 0
		seen := make(map[int32]bool)
		for _, i := range sh.buckets {
			if i == none {
				continue
			}
			indexed++
			e := &sh.slab[i]
			if seen[i] || e.gen == 0 || e.active < 0 {
				t.Errorf("shard %d: bucket -> slot %d holds %+v (twice: %v)", si, i, *e, seen[i])
			}
			seen[i] = true
			if got := sh.find(sourceKey{e.key, e.v6}, e.hash); got != i {
				t.Errorf("shard %d: slot %d not found from its key (got %d)", si, i, got)
			}
			if e.active > 0 {
				active++
				if e.prev != none || e.next != none || sh.head == i {
					t.Errorf("shard %d slot %d: active entry on the idle list", si, i)
				}
			}
		}
		if indexed != sh.n || active+idle != sh.n || 2*sh.n > len(sh.buckets) && sh.n <= sh.cap {
			t.Errorf("shard %d: n %d, indexed %d, active %d + idle %d, %d buckets", si, sh.n, indexed, active, idle, len(sh.buckets))
		}
		if sh.n > sh.cap && sh.idle > 0 {
			t.Errorf("shard %d: %d entries over a share of %d with %d idle", si, sh.n, sh.cap, sh.idle)
		}
		free := 0
		for i := sh.free; i != none; i = sh.slab[i].next {
			if sh.slab[i].gen != 0 {
				t.Errorf("shard %d slot %d: free slot with gen %d", si, i, sh.slab[i].gen)
			}
			free++
			if free > len(sh.slab) {
				t.Fatalf("shard %d: free list loops", si)
			}
		}
		if free+sh.n != len(sh.slab) {
			t.Errorf("shard %d: %d free + %d used != %d slots", si, free, sh.n, len(sh.slab))
		}
		sh.mu.Unlock()
	}
}

func TestNewSourcesRejectsBadSize(t *testing.T) {
	for _, size := range []int{0, -1, MaxSourceTableSize + 1} {
		if _, err := NewSources(size, nil); !errors.Is(err, ErrBadSize) {
			t.Errorf("NewSources(%d): %v, want ErrBadSize", size, err)
		}
	}
	s := mustSources(t, 1, nil)
	if err := s.Resize(0); !errors.Is(err, ErrBadSize) {
		t.Errorf("Resize(0): %v, want ErrBadSize", err)
	}
}

func TestTokenBucket(t *testing.T) {
	c := newClock()
	s := mustSources(t, 64, c.now)
	a := v4(1)
	three := mustRate(t, "3/s")

	// Full at start: the burst passes, the next is refused.
	for i := range 3 {
		if v := try(s, a, 0, three); v != OK {
			t.Fatalf("attempt %d of the burst: %v", i, v)
		}
	}
	if v := try(s, a, 0, three); v != SourceRate {
		t.Fatalf("past the burst: %v, want source_rate", v)
	}

	// Continuous refill at a fractional rate: a token every 1/3 s exactly,
	// not before. Refused attempts in between take nothing.
	c.add(time.Second / 3) // 333,333,333 ns: 0.999999999 token
	for range 50 {
		if v := try(s, a, 0, three); v != SourceRate {
			t.Fatalf("before the token: %v", v)
		}
	}
	c.add(1) // 333,333,334 ns: one token
	if v := try(s, a, 0, three); v != OK {
		t.Fatalf("at the token: %v", v)
	}
	if v := try(s, a, 0, three); v != SourceRate {
		t.Fatalf("after the token: %v", v)
	}

	// A long pause refills to the burst, no further.
	c.add(time.Hour)
	for i := range 3 {
		if v := try(s, a, 0, three); v != OK {
			t.Fatalf("refilled burst %d: %v", i, v)
		}
	}
	if v := try(s, a, 0, three); v != SourceRate {
		t.Fatalf("past the refilled burst: %v", v)
	}

	// Small steps add up exactly: 7/s attempted every millisecond from 0 to
	// 10 s from a full bucket admits the burst plus 70.
	b := v4(2)
	seven := mustRate(t, "7/s")
	admitted := 0
	for i := range 10_001 {
		if i > 0 {
			c.add(time.Millisecond)
		}
		if try(s, b, 0, seven) == OK {
			admitted++
		}
	}
	if admitted != 77 {
		t.Fatalf("7/s over 10 s: %d admitted, want 77", admitted)
	}
}

func TestTokenBucketPerMinute(t *testing.T) {
	c := newClock()
	s := mustSources(t, 64, c.now)
	a := v4(1)
	r := mustRate(t, "2/m")
	if got := tries(s, a, 0, r, 3); got != "ok ok source_rate" {
		t.Fatalf("2/m from full: %s, want a burst of exactly 2", got)
	}
	c.add(30*time.Second - 1)
	if v := try(s, a, 0, r); v != SourceRate {
		t.Fatalf("29.999999999 s into 2/m: %v", v)
	}
	c.add(1)
	if v := try(s, a, 0, r); v != OK {
		t.Fatalf("30 s into 2/m: %v", v)
	}
	if v := try(s, a, 0, r); v != SourceRate {
		t.Fatalf("after the token: %v", v)
	}
}

func TestTokenBucketClockBackwards(t *testing.T) {
	c := newClock()
	s := mustSources(t, 64, c.now)
	a := v4(1)
	r := mustRate(t, "1/s")
	if got := tries(s, a, 0, r, 2); got != "ok source_rate" {
		t.Fatalf("1/s from full: %s", got)
	}
	c.add(-time.Hour) // the clock steps back: no credit, no lock-out
	if v := try(s, a, 0, r); v != SourceRate {
		t.Fatalf("clock back an hour: %v, want source_rate (no credit)", v)
	}
	c.add(time.Second) // refill runs from the new reading
	if v := try(s, a, 0, r); v != OK {
		t.Fatalf("a second after the step back: %v", v)
	}
	if v := try(s, a, 0, r); v != SourceRate {
		t.Fatalf("after that token: %v", v)
	}
	c.add(-time.Nanosecond)
	c.add(time.Second)
	if v := try(s, a, 0, r); v != SourceRate {
		t.Fatalf("a second minus a nanosecond later, via a step back: %v", v)
	}
}

func TestTokenBucketAcrossReload(t *testing.T) {
	c := newClock()
	s := mustSources(t, 64, c.now)
	a := v4(1)
	// Known to the table under a limit only: when a rate appears, the bucket
	// starts full.
	tk, v := s.Admit(a, 5, Rate{})
	if v != OK {
		t.Fatal(v)
	}
	s.Release(tk)
	r := mustRate(t, "2/s")
	if got := tries(s, a, 5, r, 3); got != "ok ok source_rate" {
		t.Fatalf("rate added by a reload: %s, want it full at its burst of 2", got)
	}
	// A lower rate cuts the bucket to its burst.
	b := v4(2)
	if try(s, b, 0, mustRate(t, "100/s")) != OK {
		t.Fatal("first attempt")
	}
	low := mustRate(t, "3/s")
	for i := range 3 {
		if v := try(s, b, 0, low); v != OK {
			t.Fatalf("lowered to 3/s, attempt %d: %v", i, v)
		}
	}
	if v := try(s, b, 0, low); v != SourceRate {
		t.Fatalf("lowered to 3/s, past its burst: %v", v)
	}
	// A unit change keeps the tokens: 1 token left at 60/m is 1 token at 1/s.
	d := v4(3)
	for range 59 {
		try(s, d, 0, mustRate(t, "60/m"))
	}
	if got := tries(s, d, 0, mustRate(t, "1/s"), 2); got != "ok source_rate" {
		t.Fatalf("1 token left at 60/m, then 1/s: %s, want the token kept and no more", got)
	}
}

func TestSourceLimit(t *testing.T) {
	s := mustSources(t, 64, nil)
	a := v4(1)
	t1, v1 := s.Admit(a, 2, Rate{})
	t2, v2 := s.Admit(a, 2, Rate{})
	_, v3 := s.Admit(a, 2, Rate{})
	if v1 != OK || v2 != OK || v3 != SourceLimit {
		t.Fatalf("limit 2: %v %v %v", v1, v2, v3)
	}
	if _, v := s.Admit(v4(2), 2, Rate{}); v != OK {
		t.Fatalf("another source: %v", v)
	}
	s.Release(t1)
	t4, vr := s.Admit(a, 2, Rate{})
	if vr != OK {
		t.Fatalf("after a release: %v", vr)
	}
	// A lower limit from a reload applies to the open count.
	if _, v := s.Admit(a, 1, Rate{}); v != SourceLimit {
		t.Fatalf("limit lowered to 1 with 2 open: %v", v)
	}
	s.Release(t2)
	s.Release(t4)
	// Released too often: ignored, counted, never negative.
	s.Release(t1)
	s.Release(t4)
	s.Release(Ticket{})
	if st := s.Stats(); st.StaleReleases != 2 {
		t.Fatalf("stale releases %d, want 2", st.StaleReleases)
	}
	var held []Ticket
	for range 2 {
		tk, v := s.Admit(a, 2, Rate{})
		if v != OK {
			t.Fatal("after stale releases the count went below zero or stuck:", v)
		}
		held = append(held, tk)
	}
	if _, v := s.Admit(a, 2, Rate{}); v != SourceLimit {
		t.Fatalf("count went below zero: third admitted (%v)", v)
	}
	for _, tk := range held {
		s.Release(tk)
	}
	checkConsistent(t, s)
}

func TestLimitRefusalTakesNoToken(t *testing.T) {
	c := newClock()
	s := mustSources(t, 64, c.now)
	a := v4(1)
	r := mustRate(t, "2/s")
	tk, v := s.Admit(a, 1, r) // one token left
	if v != OK {
		t.Fatal(v)
	}
	for range 10 {
		if _, v := s.Admit(a, 1, r); v != SourceLimit {
			t.Fatalf("at the limit: %v, want source_limit first", v)
		}
	}
	s.Release(tk)
	if v := try(s, a, 1, r); v != OK {
		t.Fatalf("second token taken by limit refusals: %v", v)
	}
	if v := try(s, a, 1, r); v != SourceRate {
		t.Fatalf("third attempt: %v", v)
	}
}

func TestNothingTrackedWithoutRules(t *testing.T) {
	s := mustSources(t, 64, nil)
	tk, v := s.Admit(v4(1), 0, Rate{})
	if v != OK || tk != (Ticket{}) {
		t.Fatalf("no rules: %v %v", tk, v)
	}
	if tk, v := s.Admit(netip.Addr{}, 1, mustRate(t, "1/s")); v != OK || tk != (Ticket{}) {
		t.Fatalf("zero Addr: %v %v", tk, v)
	}
	s.Release(tk)
	if st := s.Stats(); st.Entries != 0 || st.StaleReleases != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestSourceKeys(t *testing.T) {
	s := mustSources(t, 1024, nil)
	same := [][]string{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2:abcd::9"},
		{"10.0.0.1", "::ffff:10.0.0.1"},
		{"fe80::1%eth0", "fe80::2%eth1", "fe80::3"},
	}
	for _, group := range same {
		tk, v := s.Admit(netip.MustParseAddr(group[0]), 1, Rate{})
		if v != OK {
			t.Fatalf("%s: %v", group[0], v)
		}
		for _, other := range group[1:] {
			if _, v := s.Admit(netip.MustParseAddr(other), 1, Rate{}); v != SourceLimit {
				t.Errorf("%s is not the same source as %s (%v)", other, group[0], v)
			}
		}
		defer s.Release(tk)
	}
	// Different sources, including the IPv6 /64 holding an IPv4 address's
	// bits and the IPv4-compatible form.
	for _, other := range []string{"2001:db8:1:3::1", "2001:db8:1:1::1", "10.0.0.2", "::a00:1", "0.0.0.0", "0:0:a00:1::", "fe80:0:0:1::1"} {
		tk, v := s.Admit(netip.MustParseAddr(other), 1, Rate{})
		if v != OK {
			t.Errorf("%s shares a source with an earlier address (%v)", other, v)
		}
		defer s.Release(tk)
	}
}

func TestLeastRecentlySeenIsEvicted(t *testing.T) {
	s := mustSources(t, 16, nil) // one shard: a strict LRU
	if len(s.shards) != 1 {
		t.Fatalf("%d shards for 16 entries", len(s.shards))
	}
	for i := range 16 {
		try(s, v4(i), 1, Rate{})
	}
	try(s, v4(0), 1, Rate{}) // admitted: seen
	// Refused: seen too. v4(1) is held, so it is pinned, then idle again.
	tk, _ := s.Admit(v4(1), 1, Rate{})
	if _, v := s.Admit(v4(1), 1, Rate{}); v != SourceLimit {
		t.Fatal(v)
	}
	s.Release(tk)
	try(s, v4(100), 1, Rate{}) // evicts v4(2), the least recently seen
	try(s, v4(101), 1, Rate{}) // evicts v4(3)
	for _, c := range []struct {
		i    int
		want bool
	}{{0, true}, {1, true}, {2, false}, {3, false}, {4, true}, {15, true}, {100, true}, {101, true}} {
		if ok := tracked(s, v4(c.i)); ok != c.want {
			t.Errorf("source %d in the table: %v, want %v", c.i, ok, c.want)
		}
	}
	if st := s.Stats(); st.Entries != 16 || st.Evictions != 2 {
		t.Fatalf("stats %+v", st)
	}
	checkConsistent(t, s)
}

func TestEvictionBound(t *testing.T) {
	const size = 4096
	s := mustSources(t, size, nil)
	r := mustRate(t, "10/s")
	for i := range 10 * size {
		if v := try(s, v4(i), 5, r); v != OK {
			t.Fatalf("new source %d: %v", i, v)
		}
		if i%997 == 0 {
			if st := s.Stats(); st.Entries > size {
				t.Fatalf("after %d sources: %d entries, bound %d", i+1, st.Entries, size)
			}
		}
	}
	st := s.Stats()
	if st.Entries != size || st.Active != 0 || st.Evictions != 9*size || st.Size != size {
		t.Fatalf("after 10x size sources: %+v", st)
	}
	checkConsistent(t, s)
}

// heap returns the live heap after a full collection.
func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestMemoryPerEntry measures the table at the default size, full, and
// after ten times as many sources again: the figure goes in the package doc.
func TestMemoryPerEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("fills 720,896 sources")
	}
	const size = DefaultSourceTableSize
	r := mustRate(t, "50/s")
	before := heap()
	s := mustSources(t, size, nil)
	for i := range size {
		try(s, v4(i), 20, r)
	}
	full := heap()
	for i := size; i < 11*size; i++ {
		try(s, v4(i), 20, r)
	}
	churned := heap()
	runtime.KeepAlive(s)
	if st := s.Stats(); st.Entries != size {
		t.Fatalf("entries %d", st.Entries)
	}
	per := float64(full-before) / size
	t.Logf("%d entries: %d bytes, %.1f bytes per entry; after 10x churn %+d bytes", size, full-before, per, int64(churned)-int64(full))
	// Generous bounds, not a tuning target: a 48-byte slot plus a map slot
	// and its share of the map's spare capacity, and churn adding nothing
	// that scales with the number of sources seen.
	if per > 160 {
		t.Errorf("%.1f bytes per entry, want at most 160", per)
	}
	if grown := int64(churned) - int64(full); grown > int64(full-before)/10 {
		t.Errorf("10x churn grew the heap by %d bytes (table %d)", grown, full-before)
	}
}

func TestActiveEntriesAreNeverEvicted(t *testing.T) {
	s := mustSources(t, 16, nil)
	var held []Ticket
	for i := range 16 {
		tk, v := s.Admit(v4(i), 1, Rate{})
		if v != OK {
			t.Fatal(v)
		}
		held = append(held, tk)
	}
	// The table is full of sources with open connections: a new source is
	// admitted and tracked over the bound; nothing is evicted.
	extra, v := s.Admit(v4(100), 1, Rate{})
	if v != OK {
		t.Fatalf("new source with a full table of active ones: %v", v)
	}
	if st := s.Stats(); st.Entries != 17 || st.Active != 17 || st.Evictions != 0 {
		t.Fatalf("stats %+v", st)
	}
	for i := range 16 { // every count survived
		if _, v := s.Admit(v4(i), 1, Rate{}); v != SourceLimit {
			t.Fatalf("source %d at its limit: %v (count lost)", i, v)
		}
	}
	if _, v := s.Admit(v4(100), 1, Rate{}); v != SourceLimit {
		t.Fatalf("the source over the bound is not limited: %v", v)
	}
	checkConsistent(t, s)
	// Its release brings the table back to the bound at once.
	s.Release(extra)
	if st := s.Stats(); st.Entries != 16 || st.Evictions != 1 {
		t.Fatalf("after the extra release: %+v", st)
	}
	s.Release(extra) // stale: its slot is free now
	for _, tk := range held[:8] {
		s.Release(tk)
	}
	// New sources take the idle slots only; the 8 still open stay counted.
	for i := 200; i < 216; i++ {
		try(s, v4(i), 1, Rate{})
	}
	for i := 8; i < 16; i++ {
		if _, v := s.Admit(v4(i), 1, Rate{}); v != SourceLimit {
			t.Fatalf("source %d at its limit after churn: %v", i, v)
		}
	}
	// A ticket whose slot was reused by another source does not touch it.
	tk, v := s.Admit(v4(300), 1, Rate{})
	if v != OK {
		t.Fatal(v)
	}
	for _, old := range held[:8] {
		s.Release(old)
	}
	if _, v := s.Admit(v4(300), 1, Rate{}); v != SourceLimit {
		t.Fatalf("a stale ticket released another source's connection: %v", v)
	}
	s.Release(tk)
	for _, old := range held[8:] {
		s.Release(old)
	}
	if st := s.Stats(); st.Active != 0 || st.Entries > 16 || st.StaleReleases != 9 {
		t.Fatalf("at the end: %+v", st)
	}
	checkConsistent(t, s)

	// Far over the bound (the index grows), and back.
	held = held[:0]
	for i := range 200 {
		tk, v := s.Admit(v4(1000+i), 1, Rate{})
		if v != OK {
			t.Fatal(v)
		}
		held = append(held, tk)
	}
	checkConsistent(t, s)
	for i := range 200 {
		if _, v := s.Admit(v4(1000+i), 1, Rate{}); v != SourceLimit {
			t.Fatalf("source %d of 200 held over a bound of 16: %v", i, v)
		}
	}
	for _, tk := range held {
		s.Release(tk)
	}
	if st := s.Stats(); st.Active != 0 || st.Entries != 16 || st.StaleReleases != 9 {
		t.Fatalf("after 200 over the bound: %+v", st)
	}
	checkConsistent(t, s)
}

// TestSourcesMatchModel drives one shard with random admissions and
// releases, v4 and v6 sources mixed, and compares every verdict and the set
// of tracked sources with a plain model: a strict LRU over idle sources,
// sources with open connections never evicted and trimmed once idle.
func TestSourcesMatchModel(t *testing.T) {
	const size, limit, keys = 24, 2, 100
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 4))
	addr := func(i int) netip.Addr {
		if i%2 == 0 {
			return v4(i)
		}
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 7: byte(i), 15: byte(r.Uint32())})
	}
	type state struct {
		active int
		stamp  int // last attempt or release: the LRU order of idle sources
	}
	model := map[int]*state{}
	evictIdle := func() bool {
		oldest, key := -1, -1
		for k, st := range model {
			if st.active == 0 && (oldest < 0 || st.stamp < oldest) {
				oldest, key = st.stamp, k
			}
		}
		if key < 0 {
			return false
		}
		delete(model, key)
		return true
	}
	s := mustSources(t, size, nil)
	type held struct {
		key int
		tk  Ticket
	}
	var hold []held
	for step := range 20_000 {
		if len(hold) > 0 && r.IntN(5) < 2 {
			j := r.IntN(len(hold))
			h := hold[j]
			hold[j] = hold[len(hold)-1]
			hold = hold[:len(hold)-1]
			s.Release(h.tk)
			st := model[h.key]
			st.active--
			st.stamp = step
			for st.active == 0 && len(model) > size && evictIdle() {
			}
		} else {
			k := r.IntN(keys)
			tk, v := s.Admit(addr(k), limit, Rate{})
			st, ok := model[k]
			if !ok {
				if len(model) >= size {
					evictIdle()
				}
				st = &state{}
				model[k] = st
			}
			st.stamp = step
			want := OK
			if st.active >= limit {
				want = SourceLimit
			}
			if v != want {
				t.Fatalf("step %d: source %d (%d open): %v, model says %v", step, k, st.active, v, want)
			}
			if v == OK {
				st.active++
				hold = append(hold, held{k, tk})
			}
		}
		for k := range keys {
			_, want := model[k]
			if got := tracked(s, addr(k)); got != want {
				t.Fatalf("step %d: source %d tracked %v, model says %v", step, k, got, want)
			}
		}
		if step%500 == 0 {
			checkConsistent(t, s)
		}
	}
	if st := s.Stats(); st.Entries != len(model) || st.Evictions == 0 {
		t.Fatalf("stats %+v, model has %d", st, len(model))
	}
}

func TestResize(t *testing.T) {
	s := mustSources(t, 1024, nil)
	var held []Ticket
	for i := range 1024 {
		tk, _ := s.Admit(v4(i), 1, Rate{})
		if i < 100 {
			held = append(held, tk)
		} else {
			s.Release(tk)
		}
	}
	if err := s.Resize(128); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Size != 128 || st.Active != 100 || st.Entries > 128+100 {
		t.Fatalf("shrunk to 128: %+v", st)
	}
	checkConsistent(t, s)
	for i := range 100 { // held connections kept their counts and tickets
		if _, v := s.Admit(v4(i), 1, Rate{}); v != SourceLimit {
			t.Fatalf("source %d lost its count in the resize: %v", i, v)
		}
		s.Release(held[i])
	}
	if st := s.Stats(); st.Entries > 128 || st.Active != 0 || st.StaleReleases != 0 {
		t.Fatalf("after releases: %+v", st)
	}
	if err := s.Resize(4096); err != nil {
		t.Fatal(err)
	}
	for i := range 8192 {
		try(s, v4(10_000+i), 1, Rate{})
	}
	if st := s.Stats(); st.Entries != 4096 {
		t.Fatalf("grown to 4096: %+v", st)
	}
	checkConsistent(t, s)
}

// TestSourcesConcurrent runs Admit and Release from many goroutines over a
// small table: a few hot sources meet their limit and their rate, many
// cold ones force evictions and shards over their share. No source may ever
// hold more than its limit, and everything must return to zero.
func TestSourcesConcurrent(t *testing.T) {
	const (
		workers = 8
		hot     = 20
		sources = 520
		limit   = 3
	)
	rounds := 20_000
	if testing.Short() {
		rounds = 2_000
	}
	c := newClock()
	s := mustSources(t, 64, c.now)
	rate := mustRate(t, "50/s")
	var open [sources]atomic.Int32
	var admitted, byLimit, byRate atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 3))
			type held struct {
				src int
				tk  Ticket
			}
			var hold []held
			for range rounds {
				c.add(100 * time.Microsecond)
				if len(hold) > 0 && (len(hold) > 20 || r.IntN(2) == 0) {
					j := r.IntN(len(hold))
					h := hold[j]
					hold[j] = hold[len(hold)-1]
					hold = hold[:len(hold)-1]
					open[h.src].Add(-1)
					s.Release(h.tk)
					continue
				}
				src := r.IntN(hot)
				if r.IntN(10) < 3 {
					src = hot + r.IntN(sources-hot)
				}
				a := v4(src)
				if r.IntN(2) == 0 {
					a = netip.AddrFrom16(a.As16()) // the mapped form is the same source
				}
				// open counts a connection after it is admitted and until
				// before it is released, so it never exceeds the table's
				// count: above the limit means the table admitted too many.
				tk, v := s.Admit(a, limit, rate)
				switch v {
				case OK:
					admitted.Add(1)
					if n := open[src].Add(1); n > limit {
						t.Errorf("source %d holds %d connections, limit %d", src, n, limit)
					}
					hold = append(hold, held{src, tk})
				case SourceLimit:
					byLimit.Add(1)
				case SourceRate:
					byRate.Add(1)
				}
			}
			for _, h := range hold {
				open[h.src].Add(-1)
				s.Release(h.tk)
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	t.Logf("admitted %d, refused by limit %d, by rate %d; %+v", admitted.Load(), byLimit.Load(), byRate.Load(), st)
	if st.Active != 0 || st.Entries > 64 || st.StaleReleases != 0 {
		t.Fatalf("after all releases: %+v", st)
	}
	if admitted.Load() == 0 || byLimit.Load() == 0 || byRate.Load() == 0 || st.Evictions == 0 {
		t.Fatal("the run did not exercise admission, both refusals and eviction")
	}
	checkConsistent(t, s)
}

func BenchmarkSources(b *testing.B) {
	rate, _ := ParseRate("1000000/s")
	b.Run("one-source", func(b *testing.B) {
		s := mustSources(b, DefaultSourceTableSize, nil)
		a := v4(1)
		b.ReportAllocs()
		for b.Loop() {
			// Faster than 1,000,000/s, the bucket runs dry: OK and
			// source_rate alternate, both the same work.
			tk, v := s.Admit(a, 100, rate)
			if v == SourceLimit {
				b.Fatal(v)
			}
			s.Release(tk)
		}
	})
	for _, n := range []int{DefaultSourceTableSize / 2, 10 * DefaultSourceTableSize} {
		b.Run(fmt.Sprintf("sources=%d", n), func(b *testing.B) {
			s := mustSources(b, DefaultSourceTableSize, nil)
			for i := range n { // warm: the table is at its steady state
				try(s, v4(i), 100, rate)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				tk, _ := s.Admit(v4(i%n), 100, rate)
				s.Release(tk)
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		s := mustSources(b, DefaultSourceTableSize, nil)
		var next atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			base := int(next.Add(1)) << 16
			for i := 0; pb.Next(); i++ {
				tk, _ := s.Admit(v4(base+i%1000), 100, rate)
				s.Release(tk)
			}
		})
	})
}
