package pool

import (
	"math"
	"testing"
	"time"
)

func TestBackoffDuration(t *testing.T) {
	ms := time.Millisecond
	k := Backoff{Initial: 200 * ms, Max: 5000 * ms, Cooldown: 500 * ms}
	tests := []struct {
		name   string
		k      Backoff
		streak uint32
		want   time.Duration
	}{
		{"first failure is floored by cooldown", k, 1, 500 * ms},
		{"streak 0 treated as 1", k, 0, 500 * ms},
		{"second doubles, still floored", k, 2, 500 * ms},
		{"third", k, 3, 800 * ms},
		{"fifth", k, 5, 3200 * ms},
		{"capped at max", k, 6, 5000 * ms},
		{"huge streak stays capped", k, math.MaxUint32, 5000 * ms},
		{"zero cooldown gives the backoff", Backoff{Initial: 300 * ms, Max: 7000 * ms}, 1, 300 * ms},
		{"cooldown above max wins", Backoff{Initial: 100 * ms, Max: 200 * ms, Cooldown: time.Second}, 9, time.Second},
		{"zero initial", Backoff{Max: time.Second, Cooldown: 10 * ms}, 40, 10 * ms},
		{"overflowing initial saturates to max", Backoff{Initial: math.MaxInt64 / 3, Max: math.MaxInt64}, 3, math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.k.Duration(tt.streak); got != tt.want {
				t.Errorf("Duration(%d) = %v, want %v", tt.streak, got, tt.want)
			}
		})
	}
}

func TestBackoffDoubled(t *testing.T) {
	k := Backoff{Initial: 200 * time.Millisecond, Max: 5 * time.Second, Cooldown: 0}.Doubled()
	want := Backoff{Initial: 400 * time.Millisecond, Max: 10 * time.Second}
	if k != want {
		t.Fatalf("Doubled = %+v, want %+v", k, want)
	}
	if got := (Backoff{Max: math.MaxInt64}).Doubled().Max; got != math.MaxInt64 {
		t.Fatalf("doubling saturates: got %v", got)
	}
}
