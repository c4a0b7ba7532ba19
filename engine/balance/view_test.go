package balance

import (
	"math/rand/v2"
	"sync"
)

// fakeView is a pool as a balancer sees it: eligibility and active counts.
type fakeView struct {
	down   []bool
	active []int64
}

func newView(n int) *fakeView { return &fakeView{down: make([]bool, n), active: make([]int64, n)} }

func (f *fakeView) Eligible(i int) bool { return !f.down[i] }
func (f *fakeView) Active(i int) int64  { return f.active[i] }

// seeded returns a deterministic random source safe for concurrent use.
func seeded(seed uint64) func() uint64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	return func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Uint64()
	}
}

// counts picks n times and returns how often each backend was chosen.
func counts(b Balancer, v View, n, backends int, hash func(k int) uint64) []int {
	out := make([]int, backends)
	for k := range n {
		var h uint64
		if hash != nil {
			h = hash(k)
		}
		i, ok := b.Pick(v, h)
		if ok {
			out[i]++
		}
	}
	return out
}
