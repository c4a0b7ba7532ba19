package pool

import "github.com/bal-lb/bal/engine/config"

// Pool is the ordered backend list of one config snapshot. It is immutable
// once built; the Backends in it are live.
type Pool struct {
	name     string
	backends []*Backend
	byKey    map[string]int
}

// New builds the pool named name (a route's name, or the default pool's)
// for backends cfg, in config order. Every backend whose Key is in prev
// (which may be nil) is kept — same *Backend, so its health, counters,
// cooldown and open connections survive — with its weight updated. added
// are the backends created here (their Pool is name); removed are those of
// prev that are no longer configured (their open connections still hold
// them and may still call Release). prev is the same pool as of the previous
// config: a backend belongs to one pool, and a pool of another name never
// lends its backends.
func New(name string, cfg []config.Backend, prev *Pool) (p *Pool, added, removed []*Backend) {
	p = &Pool{name: name, backends: make([]*Backend, 0, len(cfg)), byKey: make(map[string]int, len(cfg))}
	for _, c := range cfg {
		k := c.Key()
		if _, dup := p.byKey[k]; dup {
			continue // config validation rejects duplicates; never index one key twice
		}
		b := prev.Lookup(k)
		if b == nil {
			b = NewBackend(c)
			b.pool = name
			added = append(added, b)
		} else {
			b.SetWeight(c.Weight)
		}
		p.byKey[k] = len(p.backends)
		p.backends = append(p.backends, b)
	}
	if prev != nil {
		for _, b := range prev.backends {
			if _, ok := p.byKey[b.key]; !ok {
				removed = append(removed, b)
			}
		}
	}
	return p, added, removed
}

// Name is the pool's name.
func (p *Pool) Name() string {
	if p == nil {
		return ""
	}
	return p.name
}

// Len is the number of backends.
func (p *Pool) Len() int {
	if p == nil {
		return 0
	}
	return len(p.backends)
}

// At returns the i-th backend in config order.
func (p *Pool) At(i int) *Backend { return p.backends[i] }

// Backends returns the backends in config order. The slice must not be
// modified.
func (p *Pool) Backends() []*Backend {
	if p == nil {
		return nil
	}
	return p.backends
}

// Index returns the position of the backend with key k, or -1.
func (p *Pool) Index(k string) int {
	if p == nil {
		return -1
	}
	if i, ok := p.byKey[k]; ok {
		return i
	}
	return -1
}

// Lookup returns the backend with key k, or nil.
func (p *Pool) Lookup(k string) *Backend {
	if i := p.Index(k); i >= 0 {
		return p.backends[i]
	}
	return nil
}

// Keys returns the backend keys in config order (a new slice).
func (p *Pool) Keys() []string {
	out := make([]string, p.Len())
	for i, b := range p.Backends() {
		out[i] = b.key
	}
	return out
}

// Weights returns the current weights in config order (a new slice).
func (p *Pool) Weights() []int {
	out := make([]int, p.Len())
	for i, b := range p.Backends() {
		out[i] = b.Weight()
	}
	return out
}
