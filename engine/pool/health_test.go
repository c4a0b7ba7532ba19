package pool

import (
	"testing"
)

func TestHealthObserve(t *testing.T) {
	down := Health{Known: true}
	up := Health{Known: true, Up: true}
	tests := []struct {
		name       string
		start      Health
		seq        []bool // observations in order
		rise, fall int
		want       Health
		changes    []Change // change caused by each observation
	}{
		{"unknown first success stays up silently", Unknown, []bool{true}, 2, 3,
			Health{Known: true, Up: true, Successes: 1}, []Change{ChangeNone}},
		{"unknown first failure goes down at once", Unknown, []bool{false}, 2, 3,
			Health{Known: true, Fails: 1}, []Change{ChangeDown}},
		{"up needs fall failures", up, []bool{false, false, false}, 2, 3,
			Health{Known: true, Fails: 3}, []Change{ChangeNone, ChangeNone, ChangeDown}},
		{"a success breaks the failure run", up, []bool{false, false, true, false, false}, 1, 3,
			Health{Known: true, Up: true, Fails: 2}, []Change{ChangeNone, ChangeNone, ChangeNone, ChangeNone, ChangeNone}},
		{"down needs rise successes", down, []bool{true, true}, 2, 2,
			Health{Known: true, Up: true, Successes: 2}, []Change{ChangeNone, ChangeUp}},
		{"a failure breaks the success run", down, []bool{true, false, true}, 2, 2,
			Health{Known: true, Successes: 1}, []Change{ChangeNone, ChangeNone, ChangeNone}},
		{"rise 1 recovers on one success", down, []bool{true}, 1, 2,
			Health{Known: true, Up: true, Successes: 1}, []Change{ChangeUp}},
		{"fall 1 drops on one failure", up, []bool{false}, 1, 1,
			Health{Known: true, Fails: 1}, []Change{ChangeDown}},
		{"thresholds below one count as one", up, []bool{false, true}, 0, -5,
			Health{Known: true, Up: true, Successes: 1}, []Change{ChangeDown, ChangeUp}},
		{"further failures while down change nothing", down, []bool{false, false}, 1, 1,
			Health{Known: true, Fails: 2}, []Change{ChangeNone, ChangeNone}},
		{"runs saturate", Health{Known: true, Up: true, Successes: maxRun}, []bool{true}, 1, 1,
			Health{Known: true, Up: true, Successes: maxRun}, []Change{ChangeNone}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.start
			for i, ok := range tt.seq {
				var ch Change
				h, ch = h.Observe(ok, tt.rise, tt.fall)
				if ch != tt.changes[i] {
					t.Errorf("observation %d (%v): change %v, want %v", i, ok, ch, tt.changes[i])
				}
			}
			if h != tt.want {
				t.Errorf("state %+v, want %+v", h, tt.want)
			}
		})
	}
}

func TestHealthPackRoundTrip(t *testing.T) {
	for _, h := range []Health{
		Unknown, {}, {Known: true}, {Known: true, Up: true, Fails: 7},
		{Known: true, Successes: maxRun, Fails: maxRun}, {Up: true, Successes: 12345},
	} {
		if got := unpack(h.pack()); got != h {
			t.Errorf("unpack(pack(%+v)) = %+v", h, got)
		}
	}
}
