package access

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultSourceTableSize is the bound of a Sources table when the
// configuration does not set one.
const DefaultSourceTableSize = 65536

// MaxSourceTableSize is the largest bound a Sources table accepts (about
// 940 MB of entries): a bigger value is a typo, not a plan.
const MaxSourceTableSize = 1 << 24

// ErrBadSize is wrapped by NewSources and Resize errors.
var ErrBadSize = errors.New("bad source table size")

// Verdict is what Sources.Admit decided. Its String is the refusal reason
// as counted and logged.
type Verdict uint8

const (
	OK          Verdict = iota // admitted
	SourceLimit                // the source holds max_connections_per_source already
	SourceRate                 // the source's token bucket is empty
)

func (v Verdict) String() string {
	switch v {
	case OK:
		return "ok"
	case SourceLimit:
		return "source_limit"
	case SourceRate:
		return "source_rate"
	}
	return fmt.Sprintf("Verdict(%d)", uint8(v))
}

// sourceKey is a source: an IPv4 address, or the top 64 bits of an IPv6
// address.
type sourceKey struct {
	v  uint64
	v6 bool
}

// keyOf returns a's source; false for the zero Addr.
func keyOf(a netip.Addr) (sourceKey, bool) {
	if a.Is4() || a.Is4In6() {
		b := a.Unmap().As4()
		return sourceKey{v: uint64(binary.BigEndian.Uint32(b[:]))}, true
	}
	if a.Is6() {
		b := a.As16()
		return sourceKey{v: binary.BigEndian.Uint64(b[:8]), v6: true}, true
	}
	return sourceKey{}, false
}

const none = -1 // no entry: an empty bucket, the end of a list

// entry is one source's state. 48 bytes.
type entry struct {
	key    uint64 // IPv4 address, or the top 64 bits of an IPv6 address
	tok    int64  // token bucket, in tokenUnit; MaxInt64 = full whatever the rate
	last   int64  // when tok was last refilled, ns since the table's epoch
	active int32  // open connections; > 0 pins the entry (never evicted)
	gen    uint32 // which use of the slot this is; 0 on a free slot
	prev   int32  // idle list (active == 0 only), toward the most recent
	next   int32  // idle list toward the least recent; free list link
	hash   uint32 // the key's hash within the shard: its home bucket
	v6     bool   // key is an IPv6 /64
}

// shard is a part of the table with its own lock and its share of the
// bound: entries in a slab, found through an open-addressing hash table
// (linear probing, deletion by backward shift, so no tombstones and no
// growth under churn) that is at most half full at the share.
type shard struct {
	mu      sync.Mutex
	buckets []int32 // slab slot or none; a power of two long
	slab    []entry
	head    int32 // most recently seen idle entry
	tail    int32 // least recently seen idle entry: the next to evict
	free    int32 // free slots, linked through next
	n       int   // entries in use
	idle    int   // of them, on the idle list
	cap     int   // this shard's share of the bound
	gen     uint32

	evictions uint64
	stale     uint64

	_ [64]byte // keep the next shard's lock off this shard's cache lines
}

// Ticket is what an admitted connection gives back to Release. The zero
// Ticket releases nothing.
type Ticket struct {
	shard uint32
	slot  int32
	gen   uint32
}

// Sources is the bounded per-source table behind max_connections_per_source
// and connection_rate_per_source. It is safe for concurrent use; the table
// is split in shards by a keyed hash of the source, each with its own
// mutex held only for a hash lookup and a few field updates.
type Sources struct {
	now    func() time.Time
	epoch  time.Time
	seed   maphash.Seed
	mask   uint32 // shards - 1
	shards []shard

	resizeMu sync.Mutex // serialises Resize
	size     atomic.Int64
}

// NewSources returns an empty table bounded to size entries without an
// open connection (see the package doc for those with one). now is the
// clock (nil: time.Now); it is read only when a rate applies. All memory
// for size entries is reserved here.
func NewSources(size int, now func() time.Time) (*Sources, error) {
	if err := checkSize(size); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	n := 1 // shards: a power of two up to 64, each with a share of 16 or more
	for n < 64 && n*2*16 <= size {
		n *= 2
	}
	s := &Sources{now: now, epoch: now(), seed: maphash.MakeSeed(), mask: uint32(n - 1), shards: make([]shard, n)}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.cap = shareOf(size, n, i)
		sh.slab = make([]entry, 0, sh.cap)
		sh.head, sh.tail, sh.free = none, none, none
		sh.rehash(bucketsFor(sh.cap))
	}
	s.size.Store(int64(size))
	return s, nil
}

func checkSize(size int) error {
	if size < 1 || size > MaxSourceTableSize {
		return fmt.Errorf("%w %d: want 1 to %d", ErrBadSize, size, MaxSourceTableSize)
	}
	return nil
}

// shareOf is shard i's part of size over n shards; the parts add up to size.
func shareOf(size, n, i int) int {
	c := size / n
	if i < size%n {
		c++
	}
	return c
}

// bucketsFor is the hash table length for c entries: at most half full.
func bucketsFor(c int) int {
	b := 8
	for b < 2*c {
		b *= 2
	}
	return b
}

// hash is the keyed hash of k: the high half picks the shard, the low half
// the bucket. The seed is random per table, so no client can aim its
// addresses at one shard or one bucket.
func (s *Sources) hash(k sourceKey) (si, h uint32) {
	var b [9]byte
	binary.LittleEndian.PutUint64(b[:], k.v)
	if k.v6 {
		b[8] = 1
	}
	x := maphash.Bytes(s.seed, b[:])
	return uint32(x>>32) & s.mask, uint32(x)
}

// Admit decides a new connection from a. limit is max_connections_per_source
// (0: none) and rate connection_rate_per_source (zero: none); they are
// passed on every call, so a reload takes effect on the next connection and
// the table keeps its state. The limit is checked first, and a refused
// connection takes no token. When both are off Admit tracks nothing and
// returns the zero Ticket; so does the zero Addr.
//
// An OK Ticket must be given to Release exactly once, when the connection
// ends (or at once if a later check refuses it).
func (s *Sources) Admit(a netip.Addr, limit int, rate Rate) (Ticket, Verdict) {
	if limit <= 0 && rate.IsZero() {
		return Ticket{}, OK
	}
	k, ok := keyOf(a)
	if !ok {
		return Ticket{}, OK
	}
	var now int64
	if !rate.IsZero() {
		now = int64(s.now().Sub(s.epoch))
	}
	si, h := s.hash(k)
	sh := &s.shards[si]
	sh.mu.Lock()
	i := sh.find(k, h)
	if i == none {
		i = sh.insert(k, h, now)
	}
	e := &sh.slab[i]
	if limit > 0 && int(e.active) >= limit {
		sh.seen(i)
		sh.mu.Unlock()
		return Ticket{}, SourceLimit
	}
	if !rate.IsZero() {
		e.tok = rate.refill(e.tok, now-e.last) // a clock gone back refills nothing
		e.last = now
		if e.tok < tokenUnit {
			sh.seen(i)
			sh.mu.Unlock()
			return Ticket{}, SourceRate
		}
		e.tok -= tokenUnit
	}
	if e.active == 0 {
		sh.unlink(i) // pinned while it has open connections
	}
	e.active++
	t := Ticket{shard: si, slot: i, gen: e.gen}
	sh.mu.Unlock()
	return t, OK
}

// Release ends a connection admitted with t. The zero Ticket is ignored. A
// ticket whose source has no open connection left (released already, its
// entry since evicted or reused) is ignored and counted as stale, so a
// count never goes below zero and a reused slot is never touched. A ticket
// released twice while its source still has other connections open cannot
// be told from theirs: release each ticket once.
func (s *Sources) Release(t Ticket) {
	if t.gen == 0 {
		return
	}
	if int(t.shard) >= len(s.shards) {
		return
	}
	sh := &s.shards[t.shard]
	sh.mu.Lock()
	if int(t.slot) >= len(sh.slab) || sh.slab[t.slot].gen != t.gen || sh.slab[t.slot].active == 0 {
		sh.stale++
		sh.mu.Unlock()
		return
	}
	e := &sh.slab[t.slot]
	e.active--
	if e.active == 0 {
		sh.pushFront(t.slot)
		sh.trim()
	}
	sh.mu.Unlock()
}

// Resize changes the bound, in place: entries, counts and buckets are kept,
// and tickets stay valid. Shrinking evicts the least recently seen idle
// entries at once (their slots are reused, their memory kept until the
// table is dropped); growing reserves the new slots and rebuilds the hash
// tables, with each shard's lock held for its part (a reload, not the data
// path). The number of shards
// chosen by NewSources stays.
func (s *Sources) Resize(size int) error {
	if err := checkSize(size); err != nil {
		return err
	}
	s.resizeMu.Lock()
	defer s.resizeMu.Unlock()
	n := len(s.shards)
	for i := range s.shards {
		sh := &s.shards[i]
		c := shareOf(size, n, i)
		sh.mu.Lock()
		sh.cap = c
		if cap(sh.slab) < c {
			sh.slab = append(make([]entry, 0, c), sh.slab...)
		}
		if b := bucketsFor(c); len(sh.buckets) < b {
			sh.rehash(b)
		}
		sh.trim()
		sh.mu.Unlock()
	}
	s.size.Store(int64(size))
	return nil
}

// SourceStats describes a Sources table.
type SourceStats struct {
	Size          int    // the bound on idle entries
	Entries       int    // sources tracked now
	Active        int    // of them, with at least one open connection
	Evictions     uint64 // idle entries dropped to make room, since NewSources
	StaleReleases uint64 // Release calls that matched no open connection
}

// Stats returns the table's counters. Each shard is read under its lock,
// one after the other, so the sums are not one instant's.
func (s *Sources) Stats() SourceStats {
	st := SourceStats{Size: int(s.size.Load())}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		st.Entries += sh.n
		st.Active += sh.n - sh.idle
		st.Evictions += sh.evictions
		st.StaleReleases += sh.stale
		sh.mu.Unlock()
	}
	return st
}

// find returns k's slot, or none.
func (sh *shard) find(k sourceKey, h uint32) int32 {
	mask := uint32(len(sh.buckets) - 1)
	for b := h & mask; ; b = (b + 1) & mask {
		i := sh.buckets[b]
		if i == none {
			return none
		}
		if e := &sh.slab[i]; e.hash == h && e.key == k.v && e.v6 == k.v6 {
			return i
		}
	}
}

// insert adds k as an idle entry with a full bucket, evicting the least
// recently seen idle entry if the shard is at its share. When every entry
// of a full shard has open connections the shard goes over its share (the
// slab and the hash table grow, the one case that allocates); the extra
// entries leave as soon as they are idle (trim).
func (sh *shard) insert(k sourceKey, h uint32, now int64) int32 {
	var i int32
	if sh.n >= sh.cap && sh.tail != none {
		i = sh.tail
		sh.unlink(i)
		sh.unindex(i)
		sh.n--
		sh.evictions++
	} else {
		if (sh.n+1)*4 > len(sh.buckets)*3 {
			sh.rehash(2 * len(sh.buckets))
		}
		if sh.free != none {
			i = sh.free
			sh.free = sh.slab[i].next
		} else {
			i = int32(len(sh.slab))
			sh.slab = append(sh.slab, entry{})
		}
	}
	sh.gen++
	if sh.gen == 0 {
		sh.gen = 1
	}
	sh.slab[i] = entry{key: k.v, v6: k.v6, hash: h, tok: math.MaxInt64, last: now, gen: sh.gen, prev: none, next: none}
	sh.index(i)
	sh.n++
	sh.pushFront(i)
	return i
}

// index puts slot i in the hash table.
func (sh *shard) index(i int32) {
	mask := uint32(len(sh.buckets) - 1)
	b := sh.slab[i].hash & mask
	for sh.buckets[b] != none {
		b = (b + 1) & mask
	}
	sh.buckets[b] = i
}

// unindex takes slot i out of the hash table and shifts the rest of its
// probe run back, so that every entry stays reachable from its home bucket.
func (sh *shard) unindex(i int32) {
	mask := uint32(len(sh.buckets) - 1)
	hole := sh.slab[i].hash & mask
	for sh.buckets[hole] != i {
		hole = (hole + 1) & mask
	}
	for j := (hole + 1) & mask; sh.buckets[j] != none; j = (j + 1) & mask {
		home := sh.slab[sh.buckets[j]].hash & mask
		// The entry at j may fill the hole if the hole is on its probe path,
		// from home to j.
		if (j-home)&mask >= (j-hole)&mask {
			sh.buckets[hole] = sh.buckets[j]
			hole = j
		}
	}
	sh.buckets[hole] = none
}

// rehash rebuilds the hash table with n buckets (a power of two).
func (sh *shard) rehash(n int) {
	sh.buckets = make([]int32, n)
	for b := range sh.buckets {
		sh.buckets[b] = none
	}
	for i := range sh.slab {
		if sh.slab[i].gen != 0 {
			sh.index(int32(i))
		}
	}
}

// trim evicts idle entries while the shard is over its share.
func (sh *shard) trim() {
	for sh.n > sh.cap && sh.tail != none {
		i := sh.tail
		sh.unlink(i)
		sh.unindex(i)
		e := &sh.slab[i]
		e.gen = 0
		e.next = sh.free
		sh.free = i
		sh.n--
		sh.evictions++
	}
}

// seen marks a refused attempt: an idle entry becomes the most recent.
func (sh *shard) seen(i int32) {
	if sh.slab[i].active == 0 && sh.head != i {
		sh.unlink(i)
		sh.pushFront(i)
	}
}

func (sh *shard) pushFront(i int32) {
	e := &sh.slab[i]
	e.prev, e.next = none, sh.head
	if sh.head != none {
		sh.slab[sh.head].prev = i
	} else {
		sh.tail = i
	}
	sh.head = i
	sh.idle++
}

func (sh *shard) unlink(i int32) {
	e := &sh.slab[i]
	if e.prev != none {
		sh.slab[e.prev].next = e.next
	} else {
		sh.head = e.next
	}
	if e.next != none {
		sh.slab[e.next].prev = e.prev
	} else {
		sh.tail = e.prev
	}
	e.prev, e.next = none, none
	sh.idle--
}
