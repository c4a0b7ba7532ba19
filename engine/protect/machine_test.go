package protect

import (
	"slices"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// step is one event at t0+at. want lists the transitions it must cause, as
// "on <reason>", "<new reason> <- <old reason>" or "off <cause>".
type step struct {
	at   time.Duration
	ev   string // refused, timeout, other, ok, exhausted, tick, config
	cfg  Config // for "config"
	want []string
}

func format(t Transition) string {
	switch {
	case !t.On:
		return "off " + string(t.Cause)
	case t.Previous != ReasonNone:
		return string(t.Reason) + " <- " + string(t.Previous)
	default:
		return "on " + string(t.Reason)
	}
}

const (
	storm     = "on timeout_or_refused_storm"
	exhausted = "on all_backends_unavailable"
	offStable = "off stable_successes"
	offQuiet  = "off quiet_window"
)

func s(sec float64) time.Duration { return time.Duration(sec * float64(time.Second)) }

func TestMachineTransitions(t *testing.T) {
	cfg := Config{Threshold: 3, Window: 10 * time.Second, StableSuccesses: 3}
	tests := []struct {
		name   string
		cfg    Config
		steps  []step
		wantOn bool
		reason Reason
	}{
		{"storm of refused turns on at the threshold", cfg, []step{
			{at: 0, ev: "refused"}, {at: s(1), ev: "refused"}, {at: s(2), ev: "refused", want: []string{storm}},
		}, true, ReasonStorm},
		{"timeouts and refused both count", cfg, []step{
			{at: 0, ev: "timeout"}, {at: s(1), ev: "refused"}, {at: s(2), ev: "timeout", want: []string{storm}},
		}, true, ReasonStorm},
		{"other failures never make a storm", cfg, []step{
			{at: 0, ev: "other"}, {at: s(1), ev: "other"}, {at: s(2), ev: "other"}, {at: s(3), ev: "other"},
		}, false, ReasonNone},
		{"the window slides (a tumbling one would reset at 10 s)", cfg, []step{
			{at: s(8), ev: "refused"}, {at: s(9), ev: "refused"}, {at: s(11), ev: "refused", want: []string{storm}},
		}, true, ReasonStorm},
		{"failures older than the window do not count", cfg, []step{
			{at: 0, ev: "refused"}, {at: s(1), ev: "refused"}, {at: s(10), ev: "refused"}, {at: s(11), ev: "refused"},
			{at: s(12), ev: "refused", want: []string{storm}},
		}, true, ReasonStorm},
		{"one client exhausting every backend turns on", cfg, []step{
			{at: 0, ev: "exhausted", want: []string{exhausted}},
		}, true, ReasonExhausted},
		{"exhausted during a storm: the reason is the latest trigger", cfg, []step{
			{at: 0, ev: "refused"}, {at: 0, ev: "refused"}, {at: 0, ev: "refused", want: []string{storm}},
			{at: s(1), ev: "exhausted", want: []string{"all_backends_unavailable <- timeout_or_refused_storm"}},
			{at: s(2), ev: "exhausted"},
		}, true, ReasonExhausted},
		{"a storm that goes on does not flip the reason back", cfg, []step{
			{at: 0, ev: "refused"}, {at: 0, ev: "refused"}, {at: 0, ev: "refused", want: []string{storm}},
			{at: s(1), ev: "exhausted", want: []string{"all_backends_unavailable <- timeout_or_refused_storm"}},
			{at: s(2), ev: "refused"}, {at: s(3), ev: "refused"},
		}, true, ReasonExhausted},
		{"a new storm after the count fell below the threshold is a new trigger", cfg, []step{
			{at: 0, ev: "exhausted", want: []string{exhausted}},
			{at: s(1), ev: "refused"}, {at: s(2), ev: "refused"},
			{at: s(3), ev: "refused", want: []string{"timeout_or_refused_storm <- all_backends_unavailable"}},
		}, true, ReasonStorm},
		{"a storm whose count dips under the threshold and climbs back is the same storm", cfg, []step{
			{at: 0, ev: "refused"}, {at: 0, ev: "refused"}, {at: 0, ev: "refused", want: []string{storm}},
			{at: s(1), ev: "exhausted", want: []string{"all_backends_unavailable <- timeout_or_refused_storm"}},
			{at: s(9), ev: "refused"},
			{at: s(10.2), ev: "refused"}, // the count fell to 2 of 3 in the window
			{at: s(10.4), ev: "refused"}, // and is back at 3: no flip to storm
			{at: s(10.5), ev: "exhausted"},
		}, true, ReasonExhausted},
		{"a storm after a full window without storm failures is a new trigger while on", cfg, []step{
			{at: 0, ev: "refused"}, {at: 0, ev: "refused"}, {at: 0, ev: "refused", want: []string{storm}},
			{at: s(1), ev: "exhausted", want: []string{"all_backends_unavailable <- timeout_or_refused_storm"}},
			{at: s(9), ev: "other"}, {at: s(10.5), ev: "exhausted"}, // still on: failures keep coming
			{at: s(11), ev: "refused"}, {at: s(11), ev: "refused"},
			{at: s(11), ev: "refused", want: []string{"timeout_or_refused_storm <- all_backends_unavailable"}},
		}, true, ReasonStorm},
		{"off after stable consecutive successes", cfg, []step{
			{at: 0, ev: "exhausted", want: []string{exhausted}},
			{at: s(1), ev: "ok"}, {at: s(2), ev: "ok"}, {at: s(3), ev: "ok", want: []string{offStable}},
		}, false, ReasonNone},
		{"a failure breaks the run of successes", cfg, []step{
			{at: 0, ev: "exhausted", want: []string{exhausted}},
			{at: s(1), ev: "ok"}, {at: s(2), ev: "ok"}, {at: s(2), ev: "other"},
			{at: s(3), ev: "ok"}, {at: s(4), ev: "ok"}, {at: s(5), ev: "ok", want: []string{offStable}},
		}, false, ReasonNone},
		{"successes while off change nothing", cfg, []step{
			{at: 0, ev: "ok"}, {at: 0, ev: "ok"}, {at: 0, ev: "ok"}, {at: 0, ev: "ok"},
			{at: s(1), ev: "exhausted", want: []string{exhausted}},
			{at: s(2), ev: "ok"},
		}, true, ReasonExhausted},
		{"off after a full quiet window, by tick, without traffic", cfg, []step{
			{at: 0, ev: "exhausted", want: []string{exhausted}},
			{at: s(9.999), ev: "tick"},
			{at: s(10), ev: "tick", want: []string{offQuiet}},
			{at: s(30), ev: "tick"},
		}, false, ReasonNone},
		{"any failure restarts the quiet window", cfg, []step{
			{at: 0, ev: "exhausted", want: []string{exhausted}},
			{at: s(8), ev: "other"},
			{at: s(17), ev: "tick"},
			{at: s(18), ev: "tick", want: []string{offQuiet}},
		}, false, ReasonNone},
		{"the quiet exit is noticed on the next event", cfg, []step{
			{at: 0, ev: "exhausted", want: []string{exhausted}},
			{at: s(25), ev: "ok", want: []string{offQuiet}},
		}, false, ReasonNone},
		{"quiet exit then a new trigger in one event", Config{Threshold: 1, Window: 10 * time.Second, StableSuccesses: 3}, []step{
			{at: 0, ev: "exhausted", want: []string{exhausted}},
			{at: s(11), ev: "timeout", want: []string{offQuiet, storm}},
		}, true, ReasonStorm},
		{"turning off forgets the storm's failures", cfg, []step{
			{at: 0, ev: "refused"}, {at: 0, ev: "refused"}, {at: 0, ev: "refused", want: []string{storm}},
			{at: s(1), ev: "ok"}, {at: s(1), ev: "ok"}, {at: s(1), ev: "ok", want: []string{offStable}},
			{at: s(2), ev: "refused"}, {at: s(2), ev: "refused"},
			{at: s(2), ev: "refused", want: []string{storm}},
		}, true, ReasonStorm},
		{"exhausted twice is one transition", cfg, []step{
			{at: 0, ev: "exhausted", want: []string{exhausted}}, {at: s(1), ev: "exhausted"},
		}, true, ReasonExhausted},
		{"a lower threshold applies to the failures already seen", Config{Threshold: 5, Window: 10 * time.Second, StableSuccesses: 3}, []step{
			{at: 0, ev: "refused"}, {at: s(1), ev: "refused"},
			{at: s(2), ev: "config", cfg: Config{Threshold: 3, Window: 10 * time.Second, StableSuccesses: 3}},
			{at: s(3), ev: "refused", want: []string{storm}},
		}, true, ReasonStorm},
		{"a higher threshold keeps the latest failures", Config{Threshold: 2, Window: 10 * time.Second, StableSuccesses: 3}, []step{
			{at: 0, ev: "refused"},
			{at: s(1), ev: "config", cfg: Config{Threshold: 3, Window: 10 * time.Second, StableSuccesses: 3}},
			{at: s(2), ev: "refused"}, {at: s(3), ev: "refused", want: []string{storm}},
		}, true, ReasonStorm},
		{"a lower stable threshold applies while on", cfg, []step{
			{at: 0, ev: "exhausted", want: []string{exhausted}},
			{at: s(1), ev: "ok"},
			{at: s(2), ev: "config", cfg: Config{Threshold: 3, Window: 10 * time.Second, StableSuccesses: 2}},
			{at: s(3), ev: "ok", want: []string{offStable}},
		}, false, ReasonNone},
		{"a shorter window applies to the quiet exit", cfg, []step{
			{at: 0, ev: "exhausted", want: []string{exhausted}},
			{at: s(1), ev: "config", cfg: Config{Threshold: 3, Window: 2 * time.Second, StableSuccesses: 3}},
			{at: s(2), ev: "tick", want: []string{offQuiet}},
		}, false, ReasonNone},
		{"nonsense settings are clamped", Config{Threshold: -1, Window: 0, StableSuccesses: 0}, []step{
			{at: 0, ev: "refused", want: []string{storm}},
			{at: 0, ev: "ok", want: []string{offStable}},
		}, false, ReasonNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMachine(tt.cfg)
			for i, st := range tt.steps {
				now := t0.Add(st.at)
				var o Outcome
				switch st.ev {
				case "refused":
					o = m.Failure(now, engine.FailRefused)
				case "timeout":
					o = m.Failure(now, engine.FailTimeout)
				case "other":
					o = m.Failure(now, engine.FailOther)
				case "ok":
					o = m.Success(now)
				case "exhausted":
					o = m.Exhausted(now)
				case "tick":
					o = m.Tick(now)
				case "config":
					m.SetConfig(st.cfg)
				default:
					t.Fatalf("bad event %q", st.ev)
				}
				var got []string
				for j := range o.Len() {
					tr := o.At(j)
					got = append(got, format(tr))
					if !tr.At.Equal(now) {
						t.Errorf("step %d: transition at %v, want %v", i, tr.At, now)
					}
				}
				if !slices.Equal(got, st.want) {
					t.Fatalf("step %d (%s at %v): transitions %q, want %q", i, st.ev, st.at, got, st.want)
				}
			}
			if st := m.State(); st.On != tt.wantOn || st.Reason != tt.reason {
				t.Fatalf("final state %+v, want on=%v reason %q", st, tt.wantOn, tt.reason)
			}
		})
	}
}

func TestMachineTransitionDetails(t *testing.T) {
	m := NewMachine(Config{Threshold: 2, Window: time.Minute, StableSuccesses: 1})
	m.Failure(t0, engine.FailRefused)
	o := m.Failure(t0.Add(time.Second), engine.FailTimeout)
	if o.Len() != 1 {
		t.Fatalf("%d transitions", o.Len())
	}
	tr := o.At(0)
	want := Transition{On: true, Reason: ReasonStorm, Cause: CauseStorm, At: t0.Add(time.Second), Failures: 2}
	if tr != want {
		t.Fatalf("transition %+v, want %+v", tr, want)
	}
	if st := m.State(); !st.Since.Equal(tr.At) || !m.QuietDeadline().Equal(tr.At.Add(time.Minute)) {
		t.Fatalf("state %+v deadline %v", st, m.QuietDeadline())
	}
	o = m.Success(t0.Add(2 * time.Second))
	if tr := o.At(0); tr.On || tr.Previous != ReasonStorm || tr.Reason != ReasonNone || tr.Failures != 2 {
		t.Fatalf("off transition %+v", tr)
	}
	if !m.QuietDeadline().IsZero() {
		t.Fatal("quiet deadline while off")
	}
}
