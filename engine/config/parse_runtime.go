package config

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"
)

// rtBlock is one runtime: block as written: the keys it sets and their
// values. Blocks are applied over an auto-tuned profile, key by key.
type rtBlock struct {
	where string         // "runtime" or "services[1].runtime"
	line  int            // the line of the runtime: key
	vals  Runtime        // the values of the keys in set
	set   map[string]int // key → line, for keys set with a valid value
}

// applyTo overwrites r's keys that the block sets and that act on a
// service of protocol proto.
func (b *rtBlock) applyTo(r *Runtime, proto Protocol) {
	if b == nil {
		return
	}
	for _, k := range runtimeKeys {
		if _, ok := b.set[k.name]; ok && k.appliesTo(proto) {
			k.copyField(r, &b.vals)
		}
	}
}

// runtimeBlock reads a runtime: block. It is validated in both modes (a
// file stays valid when its mode changes); the caller applies it in advanced
// mode only. proto is "" for the top-level block, else the protocol of the
// service whose block it is: process-wide keys are then errors, and keys of
// the other protocol warnings (proxy_protocol other than off on udp: an
// error).
func (p *parser) runtimeBlock(e entry, where string, proto Protocol) *rtBlock {
	b := &rtBlock{where: where, line: e.key.Line, set: map[string]int{}}
	v := resolve(e.val)
	if isNull(v) {
		return b
	}
	if v.Kind != yaml.MappingNode {
		p.errorf(e.line(), "%s must be a mapping of keys, got %s", where, describe(v))
		return b
	}
	for _, re := range p.mapping(v, where) {
		k, known := lookupRuntimeKey(re.name)
		if !known {
			p.errorf(re.key.Line, "%s: unknown key %q%s", where, clip(re.name), suggest(re.name, RuntimeKeys()))
			continue
		}
		name := where + "." + k.name
		if proto != "" && k.scope == ScopeProcess {
			p.errorf(re.key.Line, "%s is process-wide: set it in the top-level runtime: block, not in a service's", name)
			continue
		}
		if !p.runtimeValue(re, k, name, &b.vals) {
			continue
		}
		if proto != "" && !k.appliesTo(proto) {
			switch {
			case k.name == "proxy_protocol" && b.vals.ProxyProtocol != ProxyOff:
				p.errorf(re.line(), "%s %s is not available on a udp service: a PROXY header precedes a TCP stream", name, b.vals.ProxyProtocol)
			case k.name != "proxy_protocol":
				p.warnf(re.key.Line, "%s has no effect on a %s service (it is for %s services)", name, proto, k.proto)
			}
			continue
		}
		b.set[k.name] = re.line()
	}
	return b
}

// runtimeValue reads one runtime key's value into its field of r.
func (p *parser) runtimeValue(re entry, k runtimeKey, name string, r *Runtime) bool {
	var good bool
	switch f := k.field(r).(type) {
	case *time.Duration:
		var n int64
		if n, good = p.intValue(re, name, k.min, k.max, " (milliseconds)"); good {
			*f = ms(n)
		}
	case *int:
		var n int64
		if n, good = p.intValue(re, name, k.min, k.max, ""); good {
			*f = int(n)
		}
	case *bool:
		var b bool
		if b, good = p.boolValue(re, name); good {
			*f = b
		}
	case *string:
		var str string
		if k.kind == rtAddress {
			str, good = p.address(re, name)
		} else {
			str, good = p.enumValue(re, name, k.choices...)
		}
		if good {
			*f = str
		}
	}
	return good
}

// resolveRuntimes gives every service its runtime (docs/configuration.md,
// Auto-tuned profile) and sets Snapshot.Runtime: the top-level block
// over the first service's profile. The profile is picked by the number of
// backend entries, so that a broken file is judged with the profile its
// author meant.
func (p *parser) resolveRuntimes(s *Snapshot, svcs []*svcParse, top *rtBlock, modeOK bool) {
	adv := s.Mode == ModeAdvanced
	for _, sp := range svcs {
		svc := &sp.svc
		if sp.rt != nil && s.Mode == ModeSimple && modeOK {
			p.warnf(sp.rt.line, "%s is ignored in simple mode; set mode: advanced", sp.rt.where)
		}
		base := Profile(sp.entries)
		tuned := base
		var blocks []*rtBlock
		for _, b := range []*rtBlock{top, sp.rt} {
			if b != nil {
				b.applyTo(&tuned, svc.Protocol)
				blocks = append(blocks, b)
			}
		}
		if len(blocks) > 0 {
			suffix := ""
			if !s.Single {
				suffix = " (" + sp.named() + ")"
			}
			p.checkRuntime(tuned, blocks, suffix, adv)
		}
		if adv {
			svc.Runtime = tuned
		} else {
			svc.Runtime = base
		}
	}
	first := 0
	if len(svcs) > 0 {
		first = svcs[0].entries
	}
	s.Runtime = Profile(first)
	if adv && top != nil {
		for _, k := range runtimeKeys {
			if _, ok := top.set[k.name]; ok {
				k.copyField(&s.Runtime, &top.vals)
			}
		}
	}
}

// checkRuntime relates the keys of one resolved runtime r, built from
// blocks (later ones override earlier ones). Errors in both modes,
// warnings in advanced mode only. suffix names the service when the
// message is about a top-level key.
func (p *parser) checkRuntime(r Runtime, blocks []*rtBlock, suffix string, adv bool) {
	// origin is the line and block of the first of keys that is set, else
	// the innermost block's runtime: line.
	origin := func(keys ...string) (int, string) {
		for _, k := range keys {
			for i := len(blocks) - 1; i >= 0; i-- {
				if l, ok := blocks[i].set[k]; ok {
					return l, blocks[i].where
				}
			}
		}
		b := blocks[len(blocks)-1]
		return b.line, b.where
	}
	set := func(key string) bool {
		for _, b := range blocks {
			if _, ok := b.set[key]; ok {
				return true
			}
		}
		return false
	}
	auto := func(key string) string {
		if set(key) {
			return ""
		}
		return ", auto-tuned"
	}
	sfx := func(where string) string {
		if where == "runtime" {
			return suffix
		}
		return ""
	}
	if r.FailoverBackoffMax < r.FailoverBackoffInitial {
		line, where := origin("failover_backoff_max_ms", "failover_backoff_initial_ms")
		p.errorf(line, "%s.failover_backoff_max_ms (%d%s) must be >= failover_backoff_initial_ms (%d%s)%s",
			where, r.FailoverBackoffMax.Milliseconds(), auto("failover_backoff_max_ms"),
			r.FailoverBackoffInitial.Milliseconds(), auto("failover_backoff_initial_ms"), sfx(where))
	}
	if !adv {
		return
	}

	// Warnings about settings that are valid but defeat themselves.
	if (set("health_check_interval_ms") || set("health_check_timeout_ms")) && r.HealthCheckTimeout >= 2*r.HealthCheckInterval {
		line, where := origin("health_check_timeout_ms", "health_check_interval_ms")
		p.warnf(line, "%s.health_check_timeout_ms (%d%s) is at least twice health_check_interval_ms (%d%s): rounds never overlap, so one dead backend stretches every round to the timeout%s",
			where, r.HealthCheckTimeout.Milliseconds(), auto("health_check_timeout_ms"),
			r.HealthCheckInterval.Milliseconds(), auto("health_check_interval_ms"), sfx(where))
	}
	if (set("backend_cooldown_ms") || set("failover_backoff_max_ms")) && r.BackendCooldown >= r.FailoverBackoffMax {
		line, where := origin("backend_cooldown_ms", "failover_backoff_max_ms")
		p.warnf(line, "%s.backend_cooldown_ms (%d%s) is not below failover_backoff_max_ms (%d%s): the cooldown is always the larger one, so the failover backoff settings have no effect%s",
			where, r.BackendCooldown.Milliseconds(), auto("backend_cooldown_ms"),
			r.FailoverBackoffMax.Milliseconds(), auto("failover_backoff_max_ms"), sfx(where))
	}
}

// crossChecks relate services to each other and to the process-wide keys
// once everything was read.
func (p *parser) crossChecks(s *Snapshot, svcs []*svcParse, top *rtBlock) {
	p.overlaps(svcs)
	adv := s.Mode == ModeAdvanced
	maddr := ""
	if adv {
		maddr = s.Runtime.MetricsAddress
	}
	mhost, mport, _ := net.SplitHostPort(maddr)
	if maddr != "" {
		line := top.set["metrics_address"]
		collides := false
		for _, sp := range svcs {
			svc := &sp.svc
			if svc.Protocol != TCP || mport != strconv.Itoa(svc.Port) || !sameListener(mhost, svc.BindAddress) {
				continue
			}
			if s.Single {
				p.errorf(line, "runtime.metrics_address %s collides with the listen address %s", maddr, svc.ListenAddress())
			} else {
				p.errorf(line, "runtime.metrics_address %s collides with the listen address %s of %s (line %d)", maddr, svc.ListenAddress(), sp.named(), sp.portLine)
			}
			collides = true
			break
		}
		if !collides && (mhost == "" || isUnspecified(mhost)) {
			p.warnf(line, "runtime.metrics_address %s listens on all interfaces: /metrics is reachable from the network", maddr)
		}
	}
	for _, sp := range svcs {
		svc := &sp.svc
		check := func(where string, bs []Backend) {
			for i, b := range bs {
				if b.Port == svc.Port && reachesListener(svc.BindAddress, b.Host) {
					p.warnf(b.Line, "%s[%d] %s is bal's own listen address %s: connections would loop back into bal", where, i, b.Address(), svc.ListenAddress())
				}
				if maddr != "" && svc.Protocol == TCP && mport == strconv.Itoa(b.Port) && reachesListener(mhost, b.Host) {
					p.warnf(b.Line, "%s[%d] %s is bal's own metrics_address %s: that backend and the metrics listener cannot both listen there", where, i, b.Address(), maddr)
				}
			}
		}
		check(sp.defaultWhere, svc.Backends)
		for j := range svc.Routes {
			check(sp.routeWheres[j]+".backends", svc.Routes[j].Backends)
		}
	}
}

// overlaps reports two services on one port and protocol whose addresses
// overlap: the same address after normalising (IPv6 brackets, ::ffff:
// prefixes, letter case), or a wildcard (0.0.0.0 or ::) and any other
// address. Both wildcards take the port on every address of both families:
// :: listens dual-stack, and the portable engine listens on 0.0.0.0 with
// a dual-stack socket too. It runs in time linear in the services.
func (p *parser) overlaps(svcs []*svcParse) {
	type group struct {
		first, wildcard int
		byHost          map[string]int
	}
	groups := map[string]*group{}
	for i, sp := range svcs {
		svc := &sp.svc
		if !sp.listenOK {
			continue
		}
		key := fmt.Sprintf("%s/%d", svc.Protocol, svc.Port)
		g := groups[key]
		if g == nil {
			g = &group{first: -1, wildcard: -1, byHost: map[string]int{}}
			groups[key] = g
		}
		host, wild := canonicalHost(svc.BindAddress), isUnspecified(svc.BindAddress)
		other := -1
		switch {
		case g.wildcard >= 0:
			other = g.wildcard
		case wild && g.first >= 0:
			other = g.first
		default:
			if j, ok := g.byHost[host]; ok {
				other = j
			}
		}
		if other >= 0 {
			o := svcs[other]
			p.errorf(sp.portLine, "%s listens on %s/%s, which overlaps %s on %s/%s (line %d): two services of one protocol cannot share a port on overlapping addresses (0.0.0.0 and :: take the port on every address)",
				sp.label, svc.ListenAddress(), svc.Protocol, o.named(), o.svc.ListenAddress(), o.svc.Protocol, o.portLine)
		}
		if g.first < 0 {
			g.first = i
		}
		if wild && g.wildcard < 0 {
			g.wildcard = i
		}
		if _, ok := g.byHost[host]; !ok {
			g.byHost[host] = i
		}
	}
}
