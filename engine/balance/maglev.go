package balance

import (
	"math"
	"slices"
	"strings"
)

// SourceHash is Maglev consistent hashing (Eisenbud et al., NSDI 2016) of
// the client IP, with weights. The lookup table is a pure function of the
// backend keys, weights and order-independent hashes, so independent
// processes with the same backend list map every client identically, and
// removing a backend moves (almost) only that backend's clients.
//
// When the table's backend is not eligible (down, cooling down or already
// tried by this connection), the pick falls through to weighted rendezvous
// hashing (highest random weight) of the same client over the eligible
// backends: deterministic, spread over the others in proportion to weight,
// and each retry of one connection moves to the client's next choice.
type SourceHash struct {
	table []int32  // slot → backend index
	keyH  []uint64 // per backend: hash of its key, for rendezvous
	w     []float64
}

// Table sizes: primes, the smallest with size ≥ 100·n is used (the Maglev
// paper's guidance for an even spread).
var maglevSizes = []uint64{65537, 131071, 262139, 524287, 1048573, 2097143, 4194301}

const (
	seedOffset = 0x9e3779b97f4a7c15
	seedSkip   = 0xc2b2ae3d27d4eb4f
	seedHRW    = 0x165667b19e3779f9
)

// NewSourceHash builds the Maglev table for backends with the given keys
// (config.Backend.Key) and weights, in config order.
func NewSourceHash(keys []string, weights []int) *SourceHash { return newSourceHash(keys, weights) }

// NewSourceHashOf is NewSourceHash for the backends i with in(i) true, as if
// the others were not configured: its table is exactly the one
// NewSourceHash builds from the included backends' keys and weights alone,
// but its picks are indexes into the full list. The left-out backends
// should not be Eligible in the View (they are never picked from the table;
// the rendezvous fall-through skips ineligible ones), so a client maps to
// the same backend as in a config without them. bal builds it for a pool
// whose backends an operator took out (drain, maint).
func NewSourceHashOf(keys []string, weights []int, in func(i int) bool) *SourceHash {
	w := normWeightsN(weights, len(keys))
	var subKeys []string
	var subW []int
	var orig []int32
	for i, k := range keys {
		if in(i) {
			subKeys = append(subKeys, k)
			subW = append(subW, int(w[i]))
			orig = append(orig, int32(i))
		}
	}
	sub := newSourceHash(subKeys, subW)
	s := newSourceHash(nil, nil)
	s.table = sub.table
	for j, i := range s.table {
		s.table[j] = orig[i]
	}
	s.keyH, s.w = make([]uint64, len(keys)), make([]float64, len(keys))
	for i, k := range keys {
		s.keyH[i], s.w[i] = hashString(k, seedHRW), float64(w[i])
	}
	return s
}

func newSourceHash(keys []string, weights []int) *SourceHash {
	n := len(keys)
	s := &SourceHash{keyH: make([]uint64, n), w: make([]float64, n)}
	if n == 0 {
		return s
	}
	w := normWeightsN(weights, n)
	m := maglevSizes[len(maglevSizes)-1]
	for _, size := range maglevSizes {
		if size >= 100*uint64(n) {
			m = size
			break
		}
	}
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	next := make([]uint64, n)
	credit := make([]int64, n)
	var maxW int64
	for i, k := range keys {
		offset[i] = hashString(k, seedOffset) % m
		skip[i] = hashString(k, seedSkip)%(m-1) + 1
		s.keyH[i] = hashString(k, seedHRW)
		s.w[i] = float64(w[i])
		maxW = max(maxW, w[i])
	}
	s.table = make([]int32, m)
	for i := range s.table {
		s.table[i] = -1
	}
	// Each round every backend earns its weight in credit; a full maxW of
	// credit buys the next free slot of its permutation. The heaviest
	// backends fill one slot a round, the others proportionally fewer.
	// Backends take turns in key order, so the table does not depend on the
	// order of the config file either.
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(keys[a], keys[b]) })
	for filled := uint64(0); ; {
		for _, i := range order {
			credit[i] += w[i]
			if credit[i] < maxW {
				continue
			}
			credit[i] -= maxW
			c := (offset[i] + next[i]*skip[i]) % m
			for s.table[c] >= 0 {
				next[i]++
				c = (offset[i] + next[i]*skip[i]) % m
			}
			s.table[c] = int32(i)
			next[i]++
			if filled++; filled == m {
				return s
			}
		}
	}
}

// Pick returns the client's backend: the table's entry for h when it is
// eligible, otherwise the client's best eligible backend by weighted
// rendezvous hashing.
func (s *SourceHash) Pick(v View, h uint64) (int, bool) {
	if len(s.table) == 0 {
		return 0, false
	}
	if i := int(s.table[h%uint64(len(s.table))]); v.Eligible(i) {
		return i, true
	}
	best, bestScore := -1, math.Inf(-1)
	for i, kh := range s.keyH {
		if !v.Eligible(i) {
			continue
		}
		// Weighted rendezvous: score = w / −ln(u), u uniform in (0, 1).
		u := (float64(fmix64(h^kh)>>11) + 0.5) / (1 << 53)
		if sc := s.w[i] / -math.Log(u); sc > bestScore {
			best, bestScore = i, sc
		}
	}
	return best, best >= 0
}

// Owner returns the table's backend for h, ignoring eligibility (for tests
// and diagnostics); -1 with no backends.
func (s *SourceHash) Owner(h uint64) int {
	if len(s.table) == 0 {
		return -1
	}
	return int(s.table[h%uint64(len(s.table))])
}
