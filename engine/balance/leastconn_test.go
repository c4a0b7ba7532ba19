package balance

import "testing"

func TestLeastConnectionsFollowsHeldConnections(t *testing.T) {
	l := NewLeastConnections([]int{1, 1, 1})
	v := newView(3)
	v.active[0] = 10 // backend 0 already holds 10 connections
	// Each pick holds its connection: the next 20 go to 1 and 2 in turn
	// until they catch up with 0, then all three share.
	for k := range 20 {
		i, ok := l.Pick(v, 0)
		if !ok || i == 0 {
			t.Fatalf("pick %d went to %d (actives %v)", k, i, v.active)
		}
		v.active[i]++
	}
	if v.active[1] != 10 || v.active[2] != 10 {
		t.Fatalf("actives %v, want [10 10 10]", v.active)
	}
	for range 30 {
		i, _ := l.Pick(v, 0)
		v.active[i]++
	}
	if v.active[0] != 20 || v.active[1] != 20 || v.active[2] != 20 {
		t.Fatalf("actives %v, want [20 20 20]", v.active)
	}
	// Connections close on backend 2: it gets the next ones.
	v.active[2] = 5
	for range 15 {
		i, _ := l.Pick(v, 0)
		if i != 2 {
			t.Fatalf("picked %d, want the least loaded 2 (actives %v)", i, v.active)
		}
		v.active[i]++
	}
}

func TestLeastConnectionsWeighted(t *testing.T) {
	l := NewLeastConnections([]int{3, 1})
	v := newView(2)
	for range 400 { // held connections settle at the weights' ratio
		i, _ := l.Pick(v, 0)
		v.active[i]++
	}
	if v.active[0] != 300 || v.active[1] != 100 {
		t.Fatalf("actives %v, want [300 100]", v.active)
	}
}

func TestLeastConnectionsTiesTakeTurns(t *testing.T) {
	l := NewLeastConnections([]int{1, 1, 1})
	v := newView(3)
	v.down[0] = true
	c := counts(l, v, 100, 3, nil) // idle: every pick is a tie between 1 and 2
	if c[0] != 0 || c[1] != 50 || c[2] != 50 {
		t.Fatalf("tied picks %v, want [0 50 50]", c)
	}
}
