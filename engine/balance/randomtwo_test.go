package balance

import "testing"

func TestRandomTwoFollowsLoad(t *testing.T) {
	r := NewRandomTwo([]int{1, 1, 1, 1}, seeded(3))
	v := newView(4)
	for range 4000 { // held connections: two choices keep the spread tight
		i, _ := r.Pick(v, 0)
		v.active[i]++
	}
	lo, hi := v.active[0], v.active[0]
	for _, a := range v.active {
		lo, hi = min(lo, a), max(hi, a)
	}
	if hi-lo > 20 {
		t.Fatalf("actives %v spread %d, power of two choices should keep it small", v.active, hi-lo)
	}
}

func TestRandomTwoWeightedUnderLoad(t *testing.T) {
	r := NewRandomTwo([]int{3, 1}, seeded(5))
	v := newView(2)
	for range 4000 {
		i, _ := r.Pick(v, 0)
		v.active[i]++
	}
	if v.active[0] < 2900 || v.active[0] > 3100 {
		t.Fatalf("actives %v, want about [3000 1000]", v.active)
	}
}

func TestRandomTwoSkipsIneligible(t *testing.T) {
	r := NewRandomTwo([]int{1, 256, 1, 1}, seeded(9))
	v := newView(4)
	v.down[1], v.down[3] = true, true
	c := counts(r, v, 2000, 4, nil)
	if c[1] != 0 || c[3] != 0 || c[0] < 900 || c[2] < 900 {
		t.Fatalf("counts %v: ineligible picked or eligible starved", c)
	}
}
