package access

import (
	"errors"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in    string
		count int
		per   time.Duration
	}{
		{"100/s", 100, time.Second},
		{"20/m", 20, time.Minute},
		{"1/s", 1, time.Second},
		{"1/m", 1, time.Minute},
		{"007/s", 7, time.Second},
		{"1000000/s", MaxRateCount, time.Second},
		{"1000000/m", MaxRateCount, time.Minute},
	}
	for _, tt := range tests {
		r, err := ParseRate(tt.in)
		if err != nil || r.Count() != tt.count || r.Per() != tt.per || r.IsZero() {
			t.Errorf("ParseRate(%q) = %v %v, %v; want %d per %v", tt.in, r.Count(), r.Per(), err, tt.count, tt.per)
		}
		if back, err := ParseRate(r.String()); err != nil || back != r {
			t.Errorf("ParseRate(%q.String() = %q) = %v, %v", tt.in, r.String(), back, err)
		}
	}
	for _, bad := range []string{
		"", "100", "/s", "100/", "0/s", "00/m", "-1/s", "+1/s", "1.5/s", "1e3/s", " 1/s", "1 /s", "1/ s", "1/s ",
		"100/h", "100/S", "100/sec", "100/min", "100/ms", "1000001/s", "99999999999999999999/s", "1/s/s", "ten/s",
	} {
		r, err := ParseRate(bad)
		if err == nil || !errors.Is(err, ErrBadRate) {
			t.Errorf("ParseRate(%q) = %v, %v; want an ErrBadRate error", bad, r, err)
		}
	}
	var zero Rate
	if !zero.IsZero() || zero.String() != "" {
		t.Errorf("zero Rate: IsZero %v, String %q", zero.IsZero(), zero.String())
	}
}

func FuzzParseRate(f *testing.F) {
	for _, s := range []string{"100/s", "20/m", "0/s", "1000001/s", "-1/m", "1/h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRate(s)
		if err != nil {
			if !errors.Is(err, ErrBadRate) {
				t.Fatalf("error %v does not wrap ErrBadRate", err)
			}
			return
		}
		if r.Count() < 1 || r.Count() > MaxRateCount || (r.Per() != time.Second && r.Per() != time.Minute) {
			t.Fatalf("ParseRate(%q) = %d per %v", s, r.Count(), r.Per())
		}
		if back, err := ParseRate(r.String()); err != nil || back != r {
			t.Fatalf("round trip of %q: %v, %v", s, back, err)
		}
	})
}
