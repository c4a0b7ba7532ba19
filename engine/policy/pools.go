package policy

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/bal-lb/bal/engine/balance"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/health"
	"github.com/bal-lb/bal/engine/pool"
)

// poolState is one pool of a state: a route's, or the default pool. Every
// pool has its own backends (their health, counters and cooldowns), its own
// balancer and its own failover: a connection routed to a pool only ever
// tries that pool's backends.
type poolState struct {
	// The data path's fields first, on one cache line.
	pool   *pool.Pool
	bal    balance.Balancer
	hashed bool // the method uses the client hash
	// outTable, for a source_hash pool with backends taken out (drain,
	// maint), is the Maglev table of the others, used instead of bal so
	// that clients map as in a config without them; nil when every backend
	// is in service.
	outTable atomic.Pointer[balance.SourceHash]
	// passive: a UDP pool without an active check. Its backends are
	// judged by their flows only, so one marked down is still picked once
	// its cooldown ends (the flow that follows is its probe).
	passive bool
	// matched counts the connections routed to a route's pool; it carries
	// over reloads that keep the route (by name). Nil for the default pool
	// (its count is derived: see Policy.toRoutes).
	matched *atomic.Uint64

	name    string
	route   *config.Route // nil for the default pool
	method  config.Method
	check   config.HealthCheck
	keys    []string
	weights []int
}

// change is one thing a reload changed in the pools, logged by Apply.
type change struct {
	msg   string
	attrs []slog.Attr
	added bool // a backend was added: check it at once
}

func (c change) log(l *slog.Logger) {
	l.LogAttrs(context.Background(), slog.LevelInfo, c.msg, c.attrs...)
}

// buildPools makes st's pools and routes from svc, reusing prev's pools of
// the same name.
func (st *state) buildPools(svc *config.Service, prev *state) []change {
	cfgs := svc.Pools()
	st.pools = make([]*poolState, 0, len(cfgs))
	var changes []change
	for i := range cfgs {
		c := &cfgs[i]
		var old *poolState
		if prev != nil {
			old = prev.pool(c.Name)
		}
		ps := &poolState{name: c.Name, route: c.Route, method: c.Method, check: c.HealthCheck, hashed: c.Method == config.SourceHash,
			passive: svc.Protocol == config.UDP && c.HealthCheck.Type == ""}
		var oldPool *pool.Pool
		if old != nil {
			oldPool = old.pool
		}
		pl, added, removed := pool.New(c.Name, c.Backends, oldPool)
		ps.pool, ps.keys, ps.weights = pl, pl.Keys(), pl.Weights()
		// Same method over the same backends and weights: keep the
		// balancer, so a reload does not restart the round-robin order or
		// rebuild a table.
		if old != nil && old.method == ps.method && slices.Equal(old.keys, ps.keys) && slices.Equal(old.weights, ps.weights) {
			ps.bal = old.bal
		} else {
			ps.bal = balance.New(ps.method, ps.keys, ps.weights)
		}
		ps.refreshOut()
		if c.Route != nil {
			if old != nil && old.matched != nil {
				ps.matched = old.matched
			} else {
				ps.matched = new(atomic.Uint64)
			}
		}
		if prev != nil {
			if old == nil && c.Route != nil {
				changes = append(changes, change{msg: "route added", attrs: []slog.Attr{slog.String("route", c.Name), slog.Int("backends", pl.Len())}})
			}
			for _, b := range added {
				changes = append(changes, change{msg: "backend added", attrs: []slog.Attr{slog.String("backend", b.Name()), slog.String("pool", c.Name)}, added: true})
			}
			for _, b := range removed {
				changes = append(changes, change{msg: "backend removed", attrs: []slog.Attr{slog.String("backend", b.Name()), slog.String("pool", c.Name), slog.Int64("active_connections", b.Active())}})
			}
			if old != nil && old.method != ps.method && c.Route != nil {
				changes = append(changes, change{msg: "route method changed", attrs: []slog.Attr{slog.String("route", c.Name), slog.String("method", string(ps.method)), slog.String("previous", string(old.method))}})
			}
		}
		st.pools = append(st.pools, ps)
		if c.Route != nil {
			st.routes = append(st.routes, compileRoute(&c.Route.Match, ps))
		} else {
			st.def = ps
		}
	}
	if prev != nil {
		for _, old := range prev.pools {
			if old.route != nil && st.pool(old.name) == nil {
				var open int64
				for _, b := range old.pool.Backends() {
					open += b.Active()
				}
				changes = append(changes, change{msg: "route removed", attrs: []slog.Attr{slog.String("route", old.name), slog.Int64("active_connections", open)}})
			}
		}
	}
	return changes
}

// refreshOut rebuilds outTable from the backends' admin states (a
// source_hash pool only).
func (ps *poolState) refreshOut() {
	if !ps.hashed {
		return
	}
	bs := ps.pool.Backends()
	all := true
	for _, b := range bs {
		all = all && b.InService()
	}
	if all {
		ps.outTable.Store(nil)
		return
	}
	ps.outTable.Store(balance.NewSourceHashOf(ps.keys, ps.weights, func(i int) bool { return bs[i].InService() }))
}

// balancer is the balancer a pick uses now.
func (ps *poolState) balancer() balance.Balancer {
	if ps.hashed {
		if t := ps.outTable.Load(); t != nil {
			return t
		}
	}
	return ps.bal
}

// pool returns the pool named name, nil when there is none.
func (st *state) pool(name string) *poolState {
	for _, ps := range st.pools {
		if ps.name == name {
			return ps
		}
	}
	return nil
}

// healthRound lists every server of st's pools once per way it is checked:
// the first pool holding it probes it with its pool's check, the others
// mirror the outcome. The pools of a UDP service without a health_check
// type are checked passively only (by the flows' outcomes): they are not
// probed, only their hostnames resolved. onDown (may be nil) is called when
// a check takes a backend down.
func healthRound(st *state, onDown func(*pool.Backend, error)) health.Round {
	rt := st.svc.Runtime
	r := health.Round{
		Interval: rt.HealthCheckInterval,
		Timeout:  rt.HealthCheckTimeout,
		Rise:     rt.HealthCheckSuccessThreshold,
		Fall:     rt.HealthCheckFailThreshold,
		Logger:   st.log,
		UDP:      st.svc.Protocol == config.UDP,
		OnDown:   onDown,
	}
	index := map[string]int{}
	shared := false
	for _, ps := range st.pools {
		if ps.passive {
			r.Resolve = append(r.Resolve, ps.pool.Backends()...)
			continue
		}
		check := checkKey(&ps.check)
		for _, b := range ps.pool.Backends() {
			k := b.Key() + "\x00" + check
			if i, ok := index[k]; ok {
				for len(r.Mirrors) <= i {
					r.Mirrors = append(r.Mirrors, nil)
				}
				r.Mirrors[i] = append(r.Mirrors[i], b)
				shared = true
				continue
			}
			index[k] = len(r.Backends)
			r.Backends = append(r.Backends, b)
			r.Checks = append(r.Checks, ps.check)
		}
	}
	if !shared {
		r.Mirrors = nil
	}
	return r
}

// checkKey identifies how a pool's backends are checked: two pools with
// equal keys probe a shared server once.
func checkKey(h *config.HealthCheck) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%d|%q|%q|%q|%q|", h.Type, h.Port, h.Send, h.Expect, h.HTTPPath, h.HTTPHost)
	for _, r := range h.HTTPStatus {
		fmt.Fprintf(&b, "%d-%d,", r.Low, r.High)
	}
	return b.String()
}
