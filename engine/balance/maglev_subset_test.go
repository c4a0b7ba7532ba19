package balance

import (
	"slices"
	"testing"
)

// TestSourceHashOfMapsAsIfRemoved: a pool with some backends taken out
// (drain, maint) maps every client exactly like a config without them, also
// when another backend is down meanwhile; putting them back restores the
// full config's mapping.
func TestSourceHashOfMapsAsIfRemoved(t *testing.T) {
	keys := []string{"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "app-d.internal:8080", "10.0.0.5:8080"}
	weights := []int{1, 2, 1, 1, 3}
	tests := []struct {
		name string
		out  []int // taken out of service
		down []int // down (not eligible) in both
	}{
		{"one drained", []int{1}, nil},
		{"another drained", []int{4}, nil},
		{"two drained", []int{0, 3}, nil},
		{"one drained, another down", []int{2}, []int{0}},
		{"all but one drained", []int{0, 1, 2, 3}, nil},
		{"none", nil, nil},
	}
	const clients = 3000
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSourceHashOf(keys, weights, func(i int) bool { return !slices.Contains(tt.out, i) })
			v := newView(len(keys))
			for _, i := range append(slices.Clone(tt.out), tt.down...) {
				v.down[i] = true
			}
			var keptKeys []string
			var keptW []int
			for i := range keys {
				if !slices.Contains(tt.out, i) {
					keptKeys, keptW = append(keptKeys, keys[i]), append(keptW, weights[i])
				}
			}
			removed := NewSourceHash(keptKeys, keptW)
			rv := newView(len(keptKeys))
			for _, d := range tt.down {
				rv.down[slices.Index(keptKeys, keys[d])] = true
			}
			for k := range clients {
				h := clientHash(k)
				i, ok := s.Pick(v, h)
				j, okR := removed.Pick(rv, h)
				if ok != okR || (ok && keys[i] != keptKeys[j]) {
					t.Fatalf("client %d: taken out %v picks %v %v, the config without them %v %v", k, tt.out, i, ok, j, okR)
				}
				if ok && (slices.Contains(tt.out, i) || slices.Contains(tt.down, i)) {
					t.Fatalf("client %d picked backend %d, which is out or down", k, i)
				}
			}
		})
	}
	t.Run("every backend out", func(t *testing.T) {
		s := NewSourceHashOf(keys, weights, func(int) bool { return false })
		v := newView(len(keys))
		for i := range v.down {
			v.down[i] = true
		}
		if i, ok := s.Pick(v, clientHash(1)); ok {
			t.Fatalf("picked %d with every backend out", i)
		}
	})
	t.Run("back in", func(t *testing.T) {
		full := mapping(NewSourceHash(keys, weights), keys, clients)
		back := mapping(NewSourceHashOf(keys, weights, func(int) bool { return true }), keys, clients)
		if !slices.Equal(full, back) {
			t.Fatal("with every backend in, NewSourceHashOf maps clients differently from NewSourceHash")
		}
	})
}

// TestSourceHashDrainMovesOnlyItsClients compares what bal does for an
// unhealthy backend (its table slot falls through to rendezvous, no other
// client moves) with taking it out (the table is rebuilt without it, as a
// reload that removes it would: a few other clients move too, like in
// TestSourceHashRemovingOneOfFourRemapsFew).
func TestSourceHashDrainMovesOnlyItsClients(t *testing.T) {
	const clients = 4000
	full := NewSourceHash(fourKeys, nil)
	out := NewSourceHashOf(fourKeys, nil, func(i int) bool { return i != 1 })
	v := newView(4)
	v.down[1] = true
	movedOthers, movedOwn, own := 0, 0, 0
	for k := range clients {
		h := clientHash(k)
		before := full.Owner(h)
		after, ok := out.Pick(v, h)
		if !ok || after == 1 {
			t.Fatalf("client %d picked %d %v with backend 1 taken out", k, after, ok)
		}
		switch {
		case before == 1:
			own++
			movedOwn++
		case after != before:
			movedOthers++
		}
	}
	if own == 0 || movedOwn != own {
		t.Fatalf("%d of %d clients of the drained backend moved", movedOwn, own)
	}
	if movedOthers > clients*3/100 {
		t.Fatalf("taking one of four out moved %d of %d clients of other backends (> 3 %%)", movedOthers, clients)
	}
	t.Logf("backend 1 out: its %d clients moved; %d of %d other clients moved (the table as if removed)", own, movedOthers, clients-own)
}
