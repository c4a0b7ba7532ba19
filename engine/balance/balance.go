package balance

import (
	"encoding/binary"
	"net/netip"

	"github.com/bal-lb/bal/engine/config"
)

// View is the pool as one pick sees it. Indexes are positions in the
// backend list the Balancer was built from.
type View interface {
	// Eligible reports whether backend i may be picked now (healthy or in
	// the failover phase being served, not cooling down, not already tried by
	// this connection, with an address).
	Eligible(i int) bool
	// Active is the number of open connections of backend i.
	Active(i int) int64
}

// Balancer picks a backend. h is the client hash (HashAddr of the client
// IP); only SourceHash uses it. ok is false when no backend is eligible.
type Balancer interface {
	Pick(v View, h uint64) (i int, ok bool)
}

// New returns the balancer for method m over backends with the given keys
// and weights (same length, config order). An unknown method falls back to
// round robin (config validation rejects it before it gets here).
func New(m config.Method, keys []string, weights []int) Balancer {
	switch m {
	case config.LeastConnections:
		return NewLeastConnections(weights)
	case config.RandomTwo:
		return NewRandomTwo(weights, nil)
	case config.SourceHash:
		return NewSourceHash(keys, weights)
	default:
		return NewRoundRobin(weights)
	}
}

// HashAddr hashes a client IP for SourceHash: IPv4 and IPv4-mapped IPv6
// hash alike; the port and zone are ignored. It is stable across processes
// and platforms.
func HashAddr(a netip.Addr) uint64 {
	b := a.Unmap().As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	return fmix64(fmix64(hi^seedAddr) ^ lo)
}

const seedAddr = 0x2545f4914f6cdd1d

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// hashString is FNV-1a 64 of s after seed, finished with fmix64 so that
// similar strings ("10.0.0.1:80", "10.0.0.2:80") land far apart.
func hashString(s string, seed uint64) uint64 {
	h := uint64(fnvOffset)
	for i := range 8 {
		h = (h ^ (seed >> (8 * i) & 0xff)) * fnvPrime
	}
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime
	}
	return fmix64(h)
}

// fmix64 is MurmurHash3's 64-bit finaliser.
func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

// normWeights returns weights clamped to 1…maxWeight.
func normWeights(weights []int) []int64 { return normWeightsN(weights, len(weights)) }

// normWeightsN is normWeights for n backends: missing weights count as 1.
func normWeightsN(weights []int, n int) []int64 {
	w := make([]int64, n)
	for i := range w {
		w[i] = 1
		if i < len(weights) {
			w[i] = int64(min(max(weights[i], 1), maxWeight))
		}
	}
	return w
}

// maxWeight bounds weights so that cycles and products stay small (config
// allows 1–256).
const maxWeight = 1 << 16

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
