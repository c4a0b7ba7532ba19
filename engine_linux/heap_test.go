//go:build linux

package gnetengine

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestDeadlineHeap drives the loop's deadline heap with random schedule,
// reschedule and unschedule operations and checks it against a plain map:
// the top is always the earliest deadline and every index is consistent.
func TestDeadlineHeap(t *testing.T) {
	tests := []struct {
		name  string
		pairs int
		ops   int
	}{
		{"single", 1, 200},
		{"few", 5, 2000},
		{"many", 300, 20000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(tt.pairs), 1))
			l := &loop{armed: 1} // armed: never touch the (absent) timerfd
			ps := make([]*pair, tt.pairs)
			for i := range ps {
				ps[i] = newPair()
			}
			want := map[*pair]int64{}
			for range tt.ops {
				p := ps[rng.IntN(len(ps))]
				if rng.IntN(3) == 0 {
					l.unschedule(p)
					delete(want, p)
				} else {
					d := 2 + rng.Int64N(1000) // > armed: schedule never arms
					l.schedule(p, d)
					want[p] = d
				}
				checkHeap(t, l, want)
			}
			// Pop in order.
			var got []int64
			for len(l.timers) > 0 {
				p := l.timers[0]
				got = append(got, p.deadline)
				l.unschedule(p)
				checkHeap(t, l, map[*pair]int64{})
			}
			if !slices.IsSorted(got) {
				t.Fatalf("deadlines popped out of order: %v", got)
			}
		})
	}
}

func checkHeap(t *testing.T, l *loop, want map[*pair]int64) {
	t.Helper()
	if len(want) > 0 && len(l.timers) != len(want) {
		t.Fatalf("heap has %d entries, want %d", len(l.timers), len(want))
	}
	for i, p := range l.timers {
		if p.tidx != i {
			t.Fatalf("entry %d has index %d", i, p.tidx)
		}
		if d, ok := want[p]; len(want) > 0 && (!ok || d != p.deadline) {
			t.Fatalf("entry %d deadline %d, want %d (present %v)", i, p.deadline, d, ok)
		}
		if i > 0 && l.timers[(i-1)/2].deadline > p.deadline {
			t.Fatalf("heap order broken at %d", i)
		}
	}
}
