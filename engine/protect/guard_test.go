package protect

import (
	"sync"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
)

func TestGuardNotifiesAndPublishes(t *testing.T) {
	var got []Transition
	g := NewGuard(Config{Threshold: 2, Window: 10 * time.Second, StableSuccesses: 2}, func(tr Transition) { got = append(got, tr) })
	if g.On() || g.State() != (State{}) {
		t.Fatalf("new guard %+v", g.State())
	}
	g.Success(t0) // off: lock-free no-op
	g.Failure(t0, engine.FailRefused)
	g.Failure(t0.Add(time.Second), engine.FailRefused)
	if !g.On() || g.State().Reason != ReasonStorm || len(got) != 1 {
		t.Fatalf("after storm: on=%v %+v, %d notifications", g.On(), g.State(), len(got))
	}
	g.Exhausted(t0.Add(2 * time.Second))
	if g.State().Reason != ReasonExhausted || len(got) != 2 || got[1].Previous != ReasonStorm {
		t.Fatalf("after exhausted: %+v %+v", g.State(), got)
	}
	g.Tick(t0.Add(11 * time.Second)) // deadline is 12 s: nothing yet
	if !g.On() {
		t.Fatal("turned off before a full quiet window")
	}
	g.Tick(t0.Add(12 * time.Second))
	if g.On() || len(got) != 3 || got[2].Cause != CauseQuiet || g.Transitions() != 3 {
		t.Fatalf("after quiet window: on=%v %+v", g.On(), got)
	}
	if !g.State().Since.Equal(t0.Add(12 * time.Second)) {
		t.Fatalf("since %v", g.State().Since)
	}
}

func TestGuardTickSurvivesWallClockJump(t *testing.T) {
	g := NewGuard(Config{Threshold: 1, Window: 10 * time.Second, StableSuccesses: 5}, nil)
	g.Exhausted(t0)
	// The caller's clock jumped back an hour: the fast path must not trust
	// a deadline that is more than a window ahead.
	g.Tick(t0.Add(-time.Hour))
	if !g.On() {
		t.Fatal("off after a backwards jump (the machine measured -1 h)")
	}
	g.Tick(t0.Add(10 * time.Second))
	if g.On() {
		t.Fatal("still on after a full window")
	}
}

func TestGuardSetConfigLive(t *testing.T) {
	g := NewGuard(Config{Threshold: 10, Window: time.Second, StableSuccesses: 1}, nil)
	g.SetConfig(Config{Threshold: 1, Window: time.Minute, StableSuccesses: 4})
	if c := g.Config(); c.Threshold != 1 || c.Window != time.Minute || c.StableSuccesses != 4 {
		t.Fatalf("config %+v", c)
	}
	g.Failure(t0, engine.FailTimeout)
	if !g.On() {
		t.Fatal("new threshold not applied")
	}
}

func TestGuardConcurrent(t *testing.T) {
	var mu sync.Mutex
	n := 0
	g := NewGuard(Config{Threshold: 5, Window: time.Second, StableSuccesses: 3}, func(Transition) { mu.Lock(); n++; mu.Unlock() })
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			now := t0
			for i := range 2000 {
				now = now.Add(time.Millisecond)
				switch (i + w) % 7 {
				case 0, 1:
					g.Failure(now, engine.FailRefused)
				case 2:
					g.Exhausted(now)
				default:
					g.Success(now)
				}
				g.Tick(now)
				_ = g.State()
			}
		})
	}
	wg.Wait()
	if uint64(n) != g.Transitions() || n == 0 {
		t.Fatalf("%d notifications, %d transitions", n, g.Transitions())
	}
}

func BenchmarkGuardSuccessOff(b *testing.B) {
	g := NewGuard(Config{Threshold: 10, Window: 30 * time.Second, StableSuccesses: 12}, nil)
	b.ReportAllocs()
	for b.Loop() {
		g.Success(t0)
		g.Tick(t0)
	}
}

func BenchmarkGuardFailure(b *testing.B) {
	g := NewGuard(Config{Threshold: 1 << 20, Window: 30 * time.Second, StableSuccesses: 12}, nil)
	b.ReportAllocs()
	now := t0
	for b.Loop() {
		now = now.Add(time.Microsecond)
		g.Failure(now, engine.FailRefused)
	}
}

func BenchmarkGuardOnMixed(b *testing.B) {
	g := NewGuard(Config{Threshold: 14, Window: 30 * time.Second, StableSuccesses: 16}, nil)
	g.Exhausted(t0)
	b.ReportAllocs()
	now := t0
	i := 0
	for b.Loop() {
		i++
		now = now.Add(time.Microsecond)
		if i%8 == 0 {
			g.Failure(now, engine.FailOther)
		} else {
			g.Success(now)
		}
		g.Tick(now)
	}
}
