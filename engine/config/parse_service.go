package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/bal-lb/bal/engine/access"
	"github.com/bal-lb/bal/engine/tlshello"
	"gopkg.in/yaml.v3"
)

// This file reads services: entries, the single-service form's service
// keys, routes and their match: blocks.

var (
	serviceKeys = []string{"name", "protocol", "bind_address", "port", "method", "backends", "routes", "runtime",
		"health_check", "allow", "deny", "max_connections_per_source", "connection_rate_per_source",
		"accept_proxy_protocol", "trusted_proxies", "on_backend_down"}
	routeKeys = []string{"name", "match", "method", "backends", "health_check"}
	matchKeys = []string{"sni", "alpn", "source"}
	protocols = []string{string(TCP), string(UDP)}
)

// nameRE is the rule for service and route names.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// nameRule is nameRE in words, for messages.
const nameRule = "1 to 32 lowercase letters, digits, '-' or '_', starting with a letter or digit"

// MaxALPNLen is the longest ALPN protocol name (one length byte on the wire).
const MaxALPNLen = 255

// svcParse is one service while the file is read: the service so far and
// what later checks need to word their messages.
type svcParse struct {
	svc      Service
	where    string // "" in the single-service form, else "services[i]"
	label    string // how messages name the service: "services[1] (db)"
	nameLine int
	portLine int // the line naming the listener (port, else the service)
	bindLine int // 0 when bind_address is not set
	bindOK   bool
	listenOK bool     // port and bind_address are valid
	entries  int      // backend entries over all pools, valid or not
	rt       *rtBlock // the service's runtime: block; nil when absent
	// pool names in messages: the default pool's, then each route's.
	defaultWhere string
	routeWheres  []string
}

// named is how a message names the service: "service web", or its
// position when the name is missing or invalid.
func (sp *svcParse) named() string {
	if sp.svc.Name != "" {
		return "service " + sp.svc.Name
	}
	return sp.where
}

// services reads the services: list.
func (p *parser) services(e entry) []*svcParse {
	v := resolve(e.val)
	switch {
	case isNull(v) || v.Kind == yaml.SequenceNode && len(v.Content) == 0:
		p.errorf(e.line(), "services is empty: list at least one service as {name, port, backends}")
		return nil
	case v.Kind != yaml.SequenceNode:
		p.errorf(e.line(), "services must be a list of services ({name, port, backends}), got %s", describe(v))
		return nil
	}
	var out []*svcParse
	for i, item := range v.Content {
		if !p.visit() {
			break
		}
		where := fmt.Sprintf("services[%d]", i)
		n := resolve(item)
		if n.Kind != yaml.MappingNode {
			p.errorf(item.Line, "%s must be a mapping with name, port and backends, got %s", where, describe(n))
			continue
		}
		ents := map[string]entry{}
		for _, se := range p.mapping(n, where) {
			if !slices.Contains(serviceKeys, se.name) {
				p.errorf(se.key.Line, "%s: unknown key %q%s", where, clip(se.name), suggest(se.name, serviceKeys))
				continue
			}
			ents[se.name] = se
		}
		out = append(out, p.service(ents, where, item.Line, false))
	}
	p.uniqueNames(out)
	return out
}

// uniqueNames reports a service name used twice.
func (p *parser) uniqueNames(svcs []*svcParse) {
	first := map[string]int{}
	for _, sp := range svcs {
		if sp.svc.Name == "" {
			continue
		}
		if l, dup := first[sp.svc.Name]; dup {
			p.errorf(sp.nameLine, "%s.name %q is a duplicate of the service on line %d", sp.where, sp.svc.Name, l)
			continue
		}
		first[sp.svc.Name] = sp.nameLine
	}
}

// service reads one service from its keys: a services: entry (where
// "services[i]", line its line), or the top level of the single-service
// form (where "", line 0).
func (p *parser) service(ents map[string]entry, where string, line int, single bool) *svcParse {
	sp := &svcParse{where: where, label: where, portLine: line, bindOK: true}
	svc := &sp.svc
	*svc = Service{
		Name:          DefaultServiceName,
		Protocol:      TCP,
		BindAddress:   DefaultBindAddress,
		Port:          DefaultPort,
		Method:        DefaultMethod,
		Access:        Access{AcceptProxyProtocol: ProxyOff},
		OnBackendDown: OnDownKeep,
		Line:          line,
	}
	q := func(key string) string { return qualify(where, key) }

	if !single {
		svc.Name = ""
		if e, ok := ents["name"]; ok {
			sp.nameLine = e.line()
			if v, ok := p.strValue(e, q("name"), "a name ("+nameRule+")"); ok {
				if nameRE.MatchString(v) {
					svc.Name = v
					sp.label = fmt.Sprintf("%s (%s)", where, v)
				} else {
					p.errorf(e.line(), "%s %q is not a valid service name: %s", q("name"), clip(v), nameRule)
				}
			}
		} else {
			p.errorf(line, "%s has no name: every service needs one (%s)", where, nameRule)
		}
		if e, ok := ents["protocol"]; ok {
			if v, ok := p.enumValue(e, q("protocol"), protocols...); ok {
				svc.Protocol = Protocol(v)
			}
		}
	}

	portOK := true
	if e, ok := ents["port"]; ok {
		sp.portLine = e.line()
		v, good := p.intValue(e, q("port"), 1, 65535, "")
		svc.Port, portOK = int(v), good
	} else if !single {
		p.errorf(line, "%s has no port", sp.label)
		portOK = false
	}
	if e, ok := ents["bind_address"]; ok {
		sp.bindLine, sp.bindOK = e.line(), false
		if v, ok := p.strValue(e, q("bind_address"), "an IP address or host name"); ok {
			h := stripBrackets(v)
			if why := checkHost(h); why != "" {
				p.errorf(e.line(), "%s", hostIssue(q("bind_address"), v, why))
			} else {
				svc.BindAddress, sp.bindOK = h, true
			}
		}
	}
	if sp.bindOK && isUnspecified(svc.BindAddress) {
		note, wline := "", sp.bindLine
		if sp.bindLine == 0 {
			note, wline = ", the default when bind_address is not set", line
		}
		p.warnf(wline, "%s is %s (listens on all interfaces%s); use 127.0.0.1 to accept local clients only", q("bind_address"), svc.BindAddress, note)
	}
	sp.listenOK = portOK && sp.bindOK
	if e, ok := ents["method"]; ok {
		if v, ok := p.enumValue(e, q("method"), methods...); ok {
			svc.Method = Method(v)
		}
	}
	if e, ok := ents["on_backend_down"]; ok {
		if v, ok := p.enumValue(e, q("on_backend_down"), OnDownKeep, OnDownClose); ok {
			svc.OnBackendDown = v
		}
	}

	svc.HealthCheck = defaultHealthCheck(svc.Protocol)
	if e, ok := ents["health_check"]; ok {
		if hc, ok := p.healthCheck(e, q("health_check"), svc.Protocol); ok {
			svc.HealthCheck = hc
		}
	}
	svc.Access = p.access(ents, where, svc.Protocol)

	// Routes first: whether there are any decides if backends may be empty.
	var routeHC []bool // the route set its own health_check
	if e, ok := ents["routes"]; ok {
		svc.Routes, routeHC, sp.routeWheres = p.routes(e, q("routes"), sp)
	}
	// A broken routes: value counts as routes: its error is enough.
	hasRoutes := false
	if e, ok := ents["routes"]; ok {
		v := resolve(e.val)
		hasRoutes = !isNull(v) && !(v.Kind == yaml.SequenceNode && len(v.Content) == 0)
	}
	sp.defaultWhere = q("backends")
	if e, ok := ents["backends"]; ok {
		hint := ""
		if !single {
			hint = ", or add routes"
		}
		var n int
		svc.Backends, n = p.backends(e, q("backends"), hasRoutes, hint)
		sp.entries += n
	} else if !hasRoutes {
		if single {
			p.errorf(0, "backends is missing: list at least one backend as {host, port}")
		} else {
			p.errorf(line, "%s has no backends and no routes: list backends, or routes with backends of their own", sp.label)
		}
	}
	for i := range svc.Routes {
		r := &svc.Routes[i]
		if r.Method == "" {
			r.Method = svc.Method
		}
		if !routeHC[i] {
			r.HealthCheck = svc.HealthCheck
		}
	}

	if e, ok := ents["runtime"]; ok {
		sp.rt = p.runtimeBlock(e, q("runtime"), svc.Protocol)
	}
	return sp
}

// routes reads a service's routes: list. It returns the valid routes,
// whether each set its own health_check, and each route's name in messages.
func (p *parser) routes(e entry, name string, sp *svcParse) ([]Route, []bool, []string) {
	v := resolve(e.val)
	switch {
	case isNull(v) || v.Kind == yaml.SequenceNode && len(v.Content) == 0:
		return nil, nil, nil
	case v.Kind != yaml.SequenceNode:
		p.errorf(e.line(), "%s must be a list of {name, match, backends} entries, got %s", name, describe(v))
		return nil, nil, nil
	}
	var out []Route
	var ownHC []bool
	var wheres []string
	names := map[string]int{}
	for i, item := range v.Content {
		if !p.visit() {
			break
		}
		where := fmt.Sprintf("%s[%d]", name, i)
		n := resolve(item)
		if n.Kind != yaml.MappingNode {
			p.errorf(item.Line, "%s must be a mapping with name, match and backends, got %s", where, describe(n))
			continue
		}
		r, hc, cnt, ok := p.route(n, where, item.Line, sp.svc.Protocol)
		sp.entries += cnt
		if r.Name != "" {
			if l, dup := names[r.Name]; dup {
				p.errorf(r.Line, "%s.name %q is a duplicate of the route on line %d", where, r.Name, l)
				ok = false
			} else {
				names[r.Name] = r.Line
			}
		}
		if !ok {
			continue
		}
		out = append(out, r)
		ownHC = append(ownHC, hc)
		wheres = append(wheres, where)
	}
	return out, ownHC, wheres
}

// route reads one route. It returns the route, whether it set its own
// health_check, the number of backend entries, and whether it is valid.
// r.Line is the line of its name.
func (p *parser) route(n *yaml.Node, where string, line int, proto Protocol) (r Route, ownHC bool, entries int, ok bool) {
	ok = true
	r.Line = line
	ents := map[string]entry{}
	for _, e := range p.mapping(n, where) {
		if !slices.Contains(routeKeys, e.name) {
			p.errorf(e.key.Line, "%s: unknown key %q%s", where, clip(e.name), suggest(e.name, routeKeys))
			ok = false
			continue
		}
		ents[e.name] = e
	}
	if e, has := ents["name"]; has {
		r.Line = e.line()
		v, good := p.strValue(e, where+".name", "a name ("+nameRule+")")
		switch {
		case !good:
			ok = false
		case v == DefaultServiceName:
			p.errorf(e.line(), "%s.name %q is reserved for the service's default pool (its backends:); choose another name", where, v)
			ok = false
		case !nameRE.MatchString(v):
			p.errorf(e.line(), "%s.name %q is not a valid route name: %s", where, clip(v), nameRule)
			ok = false
		default:
			r.Name = v
		}
	} else {
		p.errorf(line, "%s has no name: every route needs one (%s)", where, nameRule)
		ok = false
	}
	if e, has := ents["match"]; has {
		m, good := p.match(e, where+".match", proto)
		r.Match, ok = m, ok && good
	} else {
		p.errorf(line, "%s has no match: set sni, alpn or source (clients that match no route go to the service's backends)", where)
		ok = false
	}
	if e, has := ents["method"]; has {
		v, good := p.enumValue(e, where+".method", methods...)
		r.Method, ok = Method(v), ok && good
	}
	if e, has := ents["health_check"]; has {
		hc, good := p.healthCheck(e, where+".health_check", proto)
		r.HealthCheck, ownHC, ok = hc, true, ok && good
	}
	if e, has := ents["backends"]; has {
		r.Backends, entries = p.backends(e, where+".backends", false, "")
		ok = ok && len(r.Backends) > 0
	} else {
		p.errorf(line, "%s has no backends: list the route's pool as {host, port} entries", where)
		ok = false
	}
	return r, ownHC, entries, ok
}

// match reads a route's match: block. At least one key must be set.
func (p *parser) match(e entry, where string, proto Protocol) (Match, bool) {
	var m Match
	v := resolve(e.val)
	if isNull(v) || v.Kind == yaml.MappingNode && len(v.Content) == 0 {
		p.errorf(e.line(), "%s has no key: set sni, alpn or source (clients that match no route go to the service's backends)", where)
		return m, false
	}
	if v.Kind != yaml.MappingNode {
		p.errorf(e.line(), "%s must be a mapping with sni, alpn or source, got %s", where, describe(v))
		return m, false
	}
	ok := true
	keys := 0
	for _, me := range p.mapping(v, where) {
		name := where + "." + me.name
		switch me.name {
		case "sni", "alpn":
			if proto == UDP {
				p.errorf(me.key.Line, "%s: a udp service cannot route on %s (it is read from a TLS ClientHello); use source", name, me.name)
				ok = false
				continue
			}
			if me.name == "sni" {
				items, good := p.stringList(me, name, "server names")
				m.SNI, ok = p.sniList(items, name)
				ok = ok && good
			} else {
				items, good := p.stringList(me, name, "protocol names")
				m.ALPN, ok = p.alpnList(items, name)
				ok = ok && good
			}
		case "source":
			var good bool
			m.Source, good = p.prefixList(me, name, false)
			ok = ok && good
		default:
			p.errorf(me.key.Line, "%s: unknown key %q%s", where, clip(me.name), suggest(me.name, matchKeys))
			ok = false
			continue
		}
		keys++
	}
	if keys == 0 && ok {
		p.errorf(e.line(), "%s has no key: set sni, alpn or source", where)
		ok = false
	}
	return m, ok
}

// listItem is one string of a YAML list with its line.
type listItem struct {
	value string
	line  int
}

// stringList reads a non-empty list of strings.
func (p *parser) stringList(e entry, name, what string) ([]listItem, bool) {
	v := resolve(e.val)
	switch {
	case isNull(v) || v.Kind == yaml.SequenceNode && len(v.Content) == 0:
		p.errorf(e.line(), "%s is empty: list at least one entry, or remove the key", name)
		return nil, false
	case v.Kind != yaml.SequenceNode:
		hint := ""
		if v.Kind == yaml.ScalarNode {
			hint = fmt.Sprintf(" (write [%q])", clip(v.Value))
		}
		p.errorf(e.line(), "%s must be a list of %s, got %s%s", name, what, describe(v), hint)
		return nil, false
	}
	ok := true
	out := make([]listItem, 0, len(v.Content))
	for i, item := range v.Content {
		if !p.visit() {
			break
		}
		n := resolve(item)
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
			p.errorf(item.Line, "%s[%d] must be a string, got %s", name, i, describe(n))
			ok = false
			continue
		}
		out = append(out, listItem{n.Value, item.Line})
	}
	return out, ok
}

// sniList validates and normalises server names: DNS names, "*" only as a
// whole first label, lowercase, no trailing dot; repeats are dropped.
func (p *parser) sniList(items []listItem, name string) ([]string, bool) {
	ok := true
	var out []string
	seen := map[string]bool{}
	for i, it := range items {
		if why := sniIssue(it.value); why != "" {
			p.errorf(it.line, "%s[%d] %q %s", name, i, clip(it.value), why)
			ok = false
			continue
		}
		if n := tlshello.NormalizeName(it.value); !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out, ok
}

// sniIssue says what is wrong with a server name pattern, or "".
func sniIssue(s string) string {
	rest, _ := strings.CutPrefix(s, "*.")
	switch {
	case s == "":
		return "is empty"
	case s == "*" || s == "*.":
		return "matches every name: leave sni out of the match instead"
	case strings.Contains(rest, "*"):
		return "is not a valid pattern: '*' may only be the whole first label (*.example.com)"
	case !tlshello.ValidName(rest):
		return "is not a valid DNS name (labels of 1 to 63 letters, digits, '-' or '_', 253 bytes in all)"
	}
	if _, err := netip.ParseAddr(strings.TrimSuffix(rest, ".")); err == nil {
		return "is an IP address: clients never send one as a server name (use source to route by address)"
	}
	return ""
}

// alpnList validates ALPN protocol names: 1 to 255 bytes; repeats dropped.
func (p *parser) alpnList(items []listItem, name string) ([]string, bool) {
	ok := true
	var out []string
	seen := map[string]bool{}
	for i, it := range items {
		if it.value == "" || len(it.value) > MaxALPNLen {
			p.errorf(it.line, "%s[%d] must be a protocol name of 1 to %d bytes (h2, http/1.1, ...), got %q", name, i, MaxALPNLen, clip(it.value))
			ok = false
			continue
		}
		if !seen[it.value] {
			seen[it.value] = true
			out = append(out, it.value)
		}
	}
	return out, ok
}

// prefixList reads a list of addresses or CIDRs (allow, deny,
// trusted_proxies, match.source) with engine/access's parser. Every bad
// entry is reported; a prefix with host bits set is a warning. An empty
// list ([]) is no entries when emptyOK, else an error.
func (p *parser) prefixList(e entry, name string, emptyOK bool) ([]netip.Prefix, bool) {
	v := resolve(e.val)
	if emptyOK && v.Kind == yaml.SequenceNode && len(v.Content) == 0 {
		return nil, true
	}
	items, ok := p.stringList(e, name, "addresses or CIDRs")
	var out []netip.Prefix
	for i, it := range items {
		ps, err := access.ParsePrefixes([]string{it.value})
		if err != nil {
			why := strings.TrimPrefix(err.Error(), fmt.Sprintf("entry 0 (%q): ", it.value))
			why = strings.TrimPrefix(why, access.ErrBadPrefix.Error()+": ")
			p.errorf(it.line, "%s[%d] %q is not an IP address or CIDR: %s", name, i, clip(it.value), why)
			ok = false
			continue
		}
		pf := ps[0]
		if pf != pf.Masked() {
			p.warnf(it.line, "%s[%d] %s has host bits set: it means %s", name, i, pf, pf.Masked())
		}
		out = append(out, pf)
	}
	return out, ok
}
