package balance

// LeastConnections picks the eligible backend with the fewest active
// connections relative to its weight (with equal weights: the fewest active
// connections, docs/design.md#balancing-methods), like nginx's and HAProxy's least-connections.
// Ties are broken in smooth weighted round-robin order, so idle backends are
// used in proportion to their weights and equal ones in turn.
type LeastConnections struct {
	w  []int64
	rr *RoundRobin
}

// NewLeastConnections builds the balancer for the weights (config order).
func NewLeastConnections(weights []int) *LeastConnections {
	return &LeastConnections{w: normWeights(weights), rr: NewRoundRobin(weights)}
}

// Pick returns the least loaded eligible backend.
func (l *LeastConnections) Pick(v View, _ uint64) (int, bool) {
	best := -1
	var bestActive int64
	for i := range l.w {
		if !v.Eligible(i) {
			continue
		}
		// a/w[i] < bestActive/w[best], cross-multiplied (connection counts
		// and weights are far below the overflow range).
		if a := max(v.Active(i), 0); best < 0 || a*l.w[best] < bestActive*l.w[i] {
			best, bestActive = i, a
		}
	}
	if best < 0 {
		return 0, false
	}
	bw := l.w[best]
	i, ok := l.rr.take(func(i int) bool {
		return v.Eligible(i) && max(v.Active(i), 0)*bw == bestActive*l.w[i]
	})
	if !ok { // counts moved between the two passes
		return best, true
	}
	return i, true
}
