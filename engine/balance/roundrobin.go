package balance

import (
	"slices"
	"sync/atomic"
)

// RoundRobin is nginx's smooth weighted round robin. The sequence of one
// full cycle (sum of the weights divided by their gcd) is computed once;
// picks walk it with an atomic cursor. A pick that lands on an ineligible
// backend takes the next eligible slot and moves the cursor past it, so
// every eligible backend still gets exactly its weight's share of each cycle
// and keeps its place in the order when others go down or come back.
type RoundRobin struct {
	seq     []int32   // backend index per slot
	slotsOf [][]int32 // per backend: its slots in increasing order
	cursor  atomic.Uint64
	n       int
}

// NewRoundRobin builds the sequence for the weights (config order).
func NewRoundRobin(weights []int) *RoundRobin {
	w := normWeights(weights)
	var g, total int64
	for _, x := range w {
		g = gcd(g, x)
	}
	for i := range w {
		w[i] /= g
		total += w[i]
	}
	r := &RoundRobin{seq: make([]int32, 0, total), slotsOf: make([][]int32, len(w)), n: len(w)}
	cur := make([]int64, len(w))
	for range total {
		best := 0
		for i := range w {
			cur[i] += w[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		r.slotsOf[best] = append(r.slotsOf[best], int32(len(r.seq)))
		r.seq = append(r.seq, int32(best))
	}
	return r
}

// Sequence returns one full cycle of backend indexes (a copy), for tests and
// diagnostics.
func (r *RoundRobin) Sequence() []int {
	out := make([]int, len(r.seq))
	for i, x := range r.seq {
		out[i] = int(x)
	}
	return out
}

// Pick returns the backend of the next eligible slot.
func (r *RoundRobin) Pick(v View, _ uint64) (int, bool) {
	if len(r.seq) == 0 {
		return 0, false
	}
	return r.take(v.Eligible)
}

// take claims the next slot and returns the backend of the nearest slot from
// there whose backend satisfies ok, moving the cursor past it.
func (r *RoundRobin) take(ok func(int) bool) (int, bool) {
	pos := r.cursor.Add(1) - 1
	i, k, found := r.nearest(pos, ok)
	if found && k > 0 {
		// Move the cursor past the slot taken, unless another pick moved it
		// meanwhile (then that pick's order wins; nothing is lost).
		r.cursor.CompareAndSwap(pos+1, pos+k+1)
	}
	return i, found
}

// nearest returns the backend of the first slot at or after pos whose
// backend satisfies ok, and its distance from pos.
func (r *RoundRobin) nearest(pos uint64, ok func(int) bool) (int, uint64, bool) {
	L := uint64(len(r.seq))
	// Short scan first: the sequence is interleaved, so a suitable slot is
	// usually close.
	limit := min(L, uint64(2*r.n+2))
	for k := range limit {
		if i := int(r.seq[(pos+k)%L]); ok(i) {
			return i, k, true
		}
	}
	if limit == L {
		return 0, 0, false
	}
	// Long cycle (uneven weights): the backend whose next slot after pos is
	// nearest, in O(n log w) rather than a scan of the whole cycle.
	start := pos % L
	best, bestDist := -1, L
	for i := range r.n {
		if !ok(i) {
			continue
		}
		s := r.slotsOf[i]
		j, _ := slices.BinarySearch(s, int32(start))
		d := uint64(s[0]) + L - start
		if j < len(s) {
			d = uint64(s[j]) - start
		}
		if d < bestDist {
			best, bestDist = i, d
		}
	}
	return best, bestDist, best >= 0
}
