package policy

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/access"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/tlshello"
)

// route is one route's match, compiled (docs/configuration.md, routes):
// every key it lists must match, any value within a key may.
type route struct {
	pool *poolState

	hasSNI   bool
	names    map[string]struct{} // exact server names
	suffixes []string            // ".example.net" for "*.example.net"

	alpn []string // nil: no alpn key

	hasSource bool
	source    *access.PrefixSet
}

func compileRoute(m *config.Match, ps *poolState) route {
	r := route{pool: ps}
	if len(m.SNI) > 0 {
		r.hasSNI = true
		for _, n := range m.SNI {
			n = tlshello.NormalizeName(n) // the parser normalised it already; a hand-made config may not have
			if suffix, ok := strings.CutPrefix(n, "*"); ok && strings.HasPrefix(suffix, ".") {
				r.suffixes = append(r.suffixes, suffix)
				continue
			}
			if r.names == nil {
				r.names = make(map[string]struct{}, len(m.SNI))
			}
			r.names[n] = struct{}{}
		}
	}
	if len(m.ALPN) > 0 {
		r.alpn = slices.Clone(m.ALPN)
	}
	if len(m.Source) > 0 {
		r.hasSource, r.source = true, PrefixSet(m.Source)
	}
	return r
}

// matches reports whether a connection with server name sni (normalised;
// "" when none), offered protocols alpn and client address a matches.
func (r *route) matches(sni string, alpn []string, a netip.Addr) bool {
	if r.hasSNI && !r.matchName(sni) {
		return false
	}
	if r.alpn != nil && !offers(alpn, r.alpn) {
		return false
	}
	return !r.hasSource || r.source.Contains(a)
}

// matchName: an exact name, or a name ending in a wildcard's suffix with at
// least one label before it (so "*.example.net" is not "example.net").
func (r *route) matchName(sni string) bool {
	if sni == "" {
		return false
	}
	if _, ok := r.names[sni]; ok {
		return true
	}
	for _, s := range r.suffixes {
		if len(sni) > len(s) && strings.HasSuffix(sni, s) {
			return true
		}
	}
	return false
}

// offers reports whether the client offered any of want.
func offers(offered, want []string) bool {
	for _, o := range offered {
		if slices.Contains(want, o) {
			return true
		}
	}
	return false
}

// match returns the pool of c: the first route that matches, else the
// default pool; nil when neither. Only an SNI or no-SNI hello has a name
// and protocols; every other inspection result (and a service that does
// not inspect) routes with neither, so only routes without sni and alpn
// keys can match.
func (st *state) match(c *engine.ConnInfo) *poolState {
	if len(st.routes) == 0 {
		return st.def
	}
	var sni string
	var alpn []string
	if r := c.Hello.Result; r == engine.InspectSNI || r == engine.InspectNoSNI {
		if c.Hello.SNI != "" {
			sni = tlshello.NormalizeName(c.Hello.SNI)
		}
		alpn = c.Hello.ALPN
	}
	a := c.Client.Addr()
	for i := range st.routes {
		if st.routes[i].matches(sni, alpn, a) {
			return st.routes[i].pool
		}
	}
	return st.def
}

// Route implements engine.Policy: it counts the inspection result and
// sends the connection to the pool of the first route that matches its
// hello and client address, else to the default pool. false means neither:
// counted as engine.RejectNoRoute, never in the total; the engine resets
// the client and calls Closed. For a service that does not inspect the
// connection was routed in Admit and Route only reports whether it has a
// pool.
func (p *Policy) Route(c *engine.ConnInfo) bool {
	cs := p.connOf(c)
	if cs.routed {
		return cs.ps != nil
	}
	cs.routed = true
	p.countInspect(c.Hello.Result)
	ps := cs.st.match(c)
	if ps == nil {
		p.reject(cs.st, engine.RejectNoRoute, c.Client)
		return false
	}
	p.routeTo(cs, ps, c)
	p.total.Add(1)
	return true
}

// routeTo gives cs its pool and counts the match.
func (p *Policy) routeTo(cs *connState, ps *poolState, c *engine.ConnInfo) {
	if ps.matched != nil {
		ps.matched.Add(1)
		p.toRoutes.Add(1)
	}
	var h uint64
	if ps.hashed {
		h = balanceHash(c)
	}
	cs.setPool(ps, h)
}

// countInspect counts one inspection result (InspectNone is not one).
func (p *Policy) countInspect(r engine.InspectResult) {
	if r != engine.InspectNone && int(r) < len(p.inspected) {
		p.inspected[r].Add(1)
	}
}
