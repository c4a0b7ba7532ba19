package balance

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

func TestRoundRobinSequence(t *testing.T) {
	tests := []struct {
		weights []int
		want    []int
	}{
		{[]int{1}, []int{0}},
		{[]int{1, 1, 1}, []int{0, 1, 2}},
		{[]int{5, 1, 1}, []int{0, 0, 1, 0, 2, 0, 0}}, // nginx's documented a a b a c a a
		{[]int{3, 1}, []int{0, 0, 1, 0}},
		{[]int{2, 4, 6}, []int{2, 1, 0, 2, 1, 2}}, // gcd 2 → weights 1, 2, 3
		{[]int{0, -3}, []int{0, 1}},               // clamped to 1
	}
	for _, tt := range tests {
		if got := NewRoundRobin(tt.weights).Sequence(); !slices.Equal(got, tt.want) {
			t.Errorf("weights %v: sequence %v, want %v", tt.weights, got, tt.want)
		}
	}
}

func TestRoundRobinOrderStableWhenHealthChanges(t *testing.T) {
	r := NewRoundRobin([]int{1, 1, 1, 1})
	v := newView(4)
	var got []int
	pick := func(n int) {
		for range n {
			i, ok := r.Pick(v, 0)
			if !ok {
				t.Fatal("no pick")
			}
			got = append(got, i)
		}
	}
	pick(4)
	v.down[2] = true
	pick(6)
	v.down[2] = false
	pick(4)
	want := []int{0, 1, 2, 3, 0, 1, 3, 0, 1, 3, 0, 1, 2, 3}
	if !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

// TestRoundRobinMatchesReference drives random eligibility patterns through
// Pick and a brute-force model of the rule "take the nearest eligible slot
// from the cursor, move the cursor past it", including long cycles where
// Pick uses its per-backend slot index.
func TestRoundRobinMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for round := range 200 {
		n := 1 + rng.IntN(6)
		weights := make([]int, n)
		for i := range weights {
			weights[i] = 1 + rng.IntN(256)
			if rng.IntN(3) == 0 {
				weights[i] = 1
			}
		}
		r := NewRoundRobin(weights)
		seq := r.Sequence()
		v := newView(n)
		cursor := 0
		for step := range 300 {
			if rng.IntN(10) == 0 {
				v.down[rng.IntN(n)] = rng.IntN(2) == 0
			}
			want, wantOK := -1, false
			for k := range seq {
				if j := (cursor + k) % len(seq); !v.down[seq[j]] {
					want, wantOK = seq[j], true
					cursor = j + 1
					break
				}
			}
			if !wantOK {
				cursor++
			}
			got, ok := r.Pick(v, 0)
			if ok != wantOK || (ok && got != want) {
				t.Fatalf("round %d step %d weights %v down %v: got %d %v, want %d %v", round, step, weights, v.down, got, ok, want, wantOK)
			}
		}
	}
}

func TestRoundRobinShareWithBackendDown(t *testing.T) {
	r := NewRoundRobin([]int{3, 2, 1})
	v := newView(3)
	v.down[1] = true
	c := counts(r, v, 400, 3, nil) // 100 full cycles of the 4 remaining slots
	if c[0] != 300 || c[1] != 0 || c[2] != 100 {
		t.Fatalf("counts %v, want [300 0 100]", c)
	}
}

func TestRoundRobinConcurrent(t *testing.T) {
	r := NewRoundRobin([]int{3, 1})
	v := newView(2)
	const workers, each = 4, 1000
	var mu sync.Mutex
	total := make([]int, 2)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			c := counts(r, v, each, 2, nil)
			mu.Lock()
			total[0] += c[0]
			total[1] += c[1]
			mu.Unlock()
		})
	}
	wg.Wait()
	if total[0] != 3000 || total[1] != 1000 {
		t.Fatalf("concurrent picks %v, want exactly [3000 1000]", total)
	}
}
