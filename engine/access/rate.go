package access

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrBadRate is wrapped by every ParseRate error.
var ErrBadRate = errors.New("bad rate")

// MaxRateCount is the largest count a Rate accepts: one million
// connections per second from one source is far beyond any real client, and
// the bound keeps the token arithmetic exact in 64-bit integers.
const MaxRateCount = 1_000_000

// tokenUnit is one token in the bucket's fixed-point arithmetic: a minute in
// nanoseconds, so that a refill of elapsed nanoseconds at n per second adds
// exactly elapsed*n*60 units and at n per minute exactly elapsed*n.
const tokenUnit = int64(time.Minute)

// Rate is a connection rate per source: Count connections per second or per
// minute, with a burst of Count. The zero Rate means no rate limit. Rates
// are comparable with ==.
type Rate struct {
	count int64 // connections per period, 0 = no limit
	per   int64 // period in nanoseconds
	mult  int64 // tokenUnit / per: units added per nanosecond per connection
}

// ParseRate parses "N/s" or "N/m": N a decimal count from 1 to
// MaxRateCount, no sign, no spaces.
func ParseRate(s string) (Rate, error) {
	num, unit, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("%w %q: want N/s or N/m", ErrBadRate, s)
	}
	var per time.Duration
	switch unit {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	default:
		return Rate{}, fmt.Errorf("%w %q: unit %q, want s (per second) or m (per minute)", ErrBadRate, s, unit)
	}
	if num == "" || strings.TrimLeft(num, "0123456789") != "" {
		return Rate{}, fmt.Errorf("%w %q: count %q is not a whole number", ErrBadRate, s, num)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > MaxRateCount {
		return Rate{}, fmt.Errorf("%w %q: count above %d", ErrBadRate, s, MaxRateCount)
	}
	if n == 0 {
		return Rate{}, fmt.Errorf("%w %q: count must be at least 1", ErrBadRate, s)
	}
	return Rate{count: n, per: int64(per), mult: tokenUnit / int64(per)}, nil
}

// IsZero reports whether r is no rate limit.
func (r Rate) IsZero() bool { return r.count == 0 }

// Count is the number of connections per Per, which is also the burst.
func (r Rate) Count() int { return int(r.count) }

// Per is the period: a second or a minute (0 for the zero Rate).
func (r Rate) Per() time.Duration { return time.Duration(r.per) }

// String is the rate as ParseRate reads it, "" for the zero Rate.
func (r Rate) String() string {
	switch r.per {
	case int64(time.Second):
		return strconv.FormatInt(r.count, 10) + "/s"
	case int64(time.Minute):
		return strconv.FormatInt(r.count, 10) + "/m"
	}
	return ""
}

// full is a bucket holding the burst, in token units.
func (r Rate) full() int64 { return r.count * tokenUnit }

// refill returns the bucket tok after elapsed nanoseconds. A bucket above
// the burst (a new entry, or a rate lowered by a reload) is cut to it.
func (r Rate) refill(tok, elapsed int64) int64 {
	full := r.full()
	elapsed = max(elapsed, 0)
	if elapsed >= r.per { // a whole period refills any bucket
		return full
	}
	if tok >= full {
		return full
	}
	// tok < full <= 6e16 and elapsed*count*mult < per*count*mult = full:
	// no overflow.
	return min(full, tok+elapsed*r.count*r.mult)
}
