package policy

import (
	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/access"
)

// Admit implements engine.Policy: it decides a connection whose client
// address is final, in the order of docs/configuration.md (access
// control), each step only for a client that passed the ones before, so
// that a refused client consumes nothing later:
//
//  1. deny, then allow (when set): refused with engine.RejectACL;
//  2. the per-source table: the source's open connections
//     (engine.RejectSourceLimit), then its token bucket
//     (engine.RejectSourceRate; a source over its limit takes no token);
//  3. max_concurrent_connections over every engine of the service
//     (engine.RejectLimit);
//  4. for a service that does not inspect, the route: the first route
//     whose source matches, else the default pool (engine.RejectNoRoute
//     when neither; the source's token stays taken, as for a connection
//     an inspecting service cannot route).
//
// A refused connection is counted by reason, logged at most once a second
// per reason with a sample client, never in the total, and nothing else is
// called for it. An admitted one of an inspecting service is counted in the
// total once Route found its pool.
func (p *Policy) Admit(c *engine.ConnInfo) bool {
	st := p.st.Load()
	var ticket access.Ticket
	if st.guarded {
		a := c.Client.Addr()
		if st.deny.Contains(a) || (st.allowOn && !st.allow.Contains(a)) {
			p.reject(st, engine.RejectACL, c.Client)
			return false
		}
		if st.sources != nil {
			var v access.Verdict
			if ticket, v = st.sources.Admit(a, st.perSource, st.rate); v != access.OK {
				r := engine.RejectSourceRate
				if v == access.SourceLimit {
					r = engine.RejectSourceLimit
				}
				p.reject(st, r, c.Client)
				return false
			}
		}
	}
	if n := p.active.Add(1); st.maxConns > 0 && n > st.maxConns {
		p.active.Add(-1)
		p.refuseAdmitted(st, ticket, engine.RejectLimit, c)
		return false
	}
	cs := p.conns.Get().(*connState)
	cs.reset(st)
	cs.ticket = ticket
	switch st.routing {
	case routeDefault:
		if st.def != nil {
			var h uint64
			if st.def.hashed {
				h = balanceHash(c)
			}
			cs.setPool(st.def, h)
		} else {
			cs.routed = true // no backend at all: Pick gives up at once
		}
	case routeBySource:
		ps := st.match(c)
		if ps == nil {
			p.active.Add(-1)
			p.conns.Put(cs)
			p.refuseAdmitted(st, ticket, engine.RejectNoRoute, c)
			return false
		}
		p.routeTo(cs, ps, c)
	}
	if st.routing != routeInspect {
		p.total.Add(1)
	}
	c.PolicyState = cs
	return true
}

// refuseAdmitted refuses a connection that got a per-source ticket.
func (p *Policy) refuseAdmitted(st *state, t access.Ticket, r engine.RejectReason, c *engine.ConnInfo) {
	if st.sources != nil {
		st.sources.Release(t)
	}
	p.reject(st, r, c.Client)
}
