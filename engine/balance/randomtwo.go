package balance

import (
	"math/bits"
	"math/rand/v2"
	"slices"
)

// RandomTwo is the power of two random choices: two distinct eligible
// backends are drawn with probability proportional to their weights, and the
// one with fewer active connections per unit of weight wins; on a tie the
// first drawn wins, so idle backends are used in proportion to their
// weights.
type RandomTwo struct {
	w   []int64
	cum []int64 // cum[i] = w[0] + … + w[i]
	rnd func() uint64
}

// NewRandomTwo builds the balancer for the weights (config order). rnd is
// the random source (it must be safe for concurrent use); nil means
// math/rand/v2's global generator.
func NewRandomTwo(weights []int, rnd func() uint64) *RandomTwo {
	if rnd == nil {
		rnd = rand.Uint64
	}
	r := &RandomTwo{w: normWeights(weights), rnd: rnd}
	r.cum = make([]int64, len(r.w))
	var sum int64
	for i, x := range r.w {
		sum += x
		r.cum[i] = sum
	}
	return r
}

const drawTries = 4

// Pick returns the less loaded of two weighted random eligible backends.
func (r *RandomTwo) Pick(v View, _ uint64) (int, bool) {
	a := r.draw(v, -1)
	if a < 0 {
		return 0, false
	}
	b := r.draw(v, a)
	if b < 0 {
		return a, true
	}
	if max(v.Active(b), 0)*r.w[a] < max(v.Active(a), 0)*r.w[b] {
		return b, true
	}
	return a, true
}

// draw returns an eligible backend other than not, drawn in proportion to
// weight, or -1. A few draws over all backends are tried first (O(log n)
// each); when they keep hitting ineligible ones it draws exactly among the
// eligible ones in O(n).
func (r *RandomTwo) draw(v View, not int) int {
	n := len(r.w)
	if n == 0 {
		return -1
	}
	total := r.cum[n-1]
	for range drawTries {
		x, _ := bits.Mul64(r.rnd(), uint64(total))
		i, _ := slices.BinarySearch(r.cum, int64(x)+1)
		if i != not && v.Eligible(i) {
			return i
		}
	}
	var sum int64
	for i := range n {
		if i != not && v.Eligible(i) {
			sum += r.w[i]
		}
	}
	if sum == 0 {
		return -1
	}
	x, _ := bits.Mul64(r.rnd(), uint64(sum))
	t := int64(x)
	for i := range n {
		if i != not && v.Eligible(i) {
			if t < r.w[i] {
				return i
			}
			t -= r.w[i]
		}
	}
	return -1 // eligibility changed between the two passes
}
