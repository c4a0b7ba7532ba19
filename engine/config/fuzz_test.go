package config

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// FuzzParse: no input panics; Parse returns either a snapshot that keeps
// every rule, or an *Error with at least one issue; and it is deterministic.
// Seeds are in testdata/fuzz/FuzzParse (valid files, broken ones, and YAML
// oddities: anchors, aliases, merges, huge numbers, deep nesting, tabs, BOM).
func FuzzParse(f *testing.F) {
	f.Add([]byte(DefaultFile))
	f.Add([]byte(one))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data, "fuzz.yaml")
		if err != nil {
			var ce *Error
			if s != nil || !errors.As(err, &ce) || !errors.Is(err, ErrInvalid) || len(ce.Issues) == 0 {
				t.Fatalf("Parse returned (%v, %v): want nil and an *Error with issues", s, err)
			}
			for _, is := range ce.Issues {
				if is.Message == "" || is.Line < 0 {
					t.Fatalf("bad issue %+v", is)
				}
			}
			return
		}
		if s == nil {
			t.Fatal("Parse returned nil, nil")
		}
		checkInvariants(t, s)
		s2, err2 := Parse(data, "fuzz.yaml")
		if err2 != nil || !reflect.DeepEqual(s, s2) {
			t.Fatalf("Parse is not deterministic: %v", err2)
		}
		if c := s.Changes(s2); len(c) != 0 {
			t.Fatalf("Changes of a snapshot against itself: %q", c)
		}
	})
}

func checkInvariants(t *testing.T, s *Snapshot) {
	t.Helper()
	if s.Mode != ModeSimple && s.Mode != ModeAdvanced {
		t.Fatalf("mode %q", s.Mode)
	}
	if s.Port < 1 || s.Port > 65535 || s.BindAddress == "" || checkHost(s.BindAddress) != "" {
		t.Fatalf("listener %q", s.ListenAddress())
	}
	switch s.Method {
	case RoundRobin, LeastConnections, RandomTwo, SourceHash:
	default:
		t.Fatalf("method %q", s.Method)
	}
	if len(s.Backends) == 0 {
		t.Fatal("no backends")
	}
	keys := map[string]bool{}
	for _, b := range s.Backends {
		if b.Host == "" || checkHost(b.Host) != "" || b.Port < 1 || b.Port > 65535 || b.Weight < 1 || b.Weight > MaxWeight {
			t.Fatalf("backend %+v", b)
		}
		if keys[b.Key()] {
			t.Fatalf("duplicate backend %s", b.Key())
		}
		keys[b.Key()] = true
	}
	r := s.Runtime
	if s.Mode == ModeSimple && r != Profile(len(s.Backends)) {
		t.Fatalf("simple mode runtime %+v", r)
	}
	for _, d := range []time.Duration{r.HealthCheckInterval, r.HealthCheckTimeout, r.BackendConnectTimeout, r.FailoverBackoffInitial,
		r.FailoverBackoffMax, r.ProtectionWindow, r.ConnectionIdleTimeout} {
		if d <= 0 || d > MaxDurationMS*time.Millisecond {
			t.Fatalf("duration %v out of range in %+v", d, r)
		}
	}
	if r.BackendCooldown < 0 || r.DrainTimeout < 0 || r.FailoverBackoffMax < r.FailoverBackoffInitial {
		t.Fatalf("runtime %+v", r)
	}
	if r.HealthCheckFailThreshold < 1 || r.HealthCheckSuccessThreshold < 1 || r.ProtectionTriggerThreshold < 1 ||
		r.ProtectionStableSuccessThreshold < 1 || r.MaxConcurrentConnections < 1 || r.TCPBacklog < 0 || r.TCPBacklog > MaxTCPBacklog {
		t.Fatalf("runtime %+v", r)
	}
	if r.OverloadPolicy != "reject" {
		t.Fatalf("overload policy %q", r.OverloadPolicy)
	}
}
