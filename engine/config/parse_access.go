package config

import (
	"strings"

	"github.com/bal-lb/bal/engine/access"
)

// proxyIn are the accept_proxy_protocol values.
var proxyIn = []string{ProxyOff, ProxyV1, ProxyV2, ProxyAny}

// access reads a service's access keys (allow, deny,
// max_connections_per_source, connection_rate_per_source,
// accept_proxy_protocol, trusted_proxies) from its entries.
func (p *parser) access(ents map[string]entry, where string, proto Protocol) Access {
	a := Access{AcceptProxyProtocol: ProxyOff}
	q := func(key string) string { return qualify(where, key) }
	if e, ok := ents["allow"]; ok {
		a.Allow, _ = p.prefixList(e, q("allow"), true)
	}
	if e, ok := ents["deny"]; ok {
		a.Deny, _ = p.prefixList(e, q("deny"), true)
	}
	if e, ok := ents["max_connections_per_source"]; ok {
		n, _ := p.intValue(e, q("max_connections_per_source"), 1, MaxConnections, " (remove the key for no limit)")
		a.MaxConnectionsPerSource = int(n)
	}
	if e, ok := ents["connection_rate_per_source"]; ok {
		name := q("connection_rate_per_source")
		if s, ok := p.strValue(e, name, `a rate such as "50/s" or "600/m"`); ok {
			r, err := access.ParseRate(s)
			if err != nil {
				why := strings.TrimPrefix(err.Error(), access.ErrBadRate.Error()+" ")
				p.errorf(e.line(), "%s must be N/s or N/m (N from 1 to %d), got %s", name, access.MaxRateCount, why)
			} else {
				a.ConnectionRatePerSource = r
			}
		}
	}
	trustedLine := 0
	if e, ok := ents["trusted_proxies"]; ok {
		trustedLine = e.key.Line
		a.TrustedProxies, _ = p.prefixList(e, q("trusted_proxies"), true)
	}
	acceptOff := true // off, as set or by default; false when broken
	if e, ok := ents["accept_proxy_protocol"]; ok {
		name := q("accept_proxy_protocol")
		v, ok := p.enumValue(e, name, proxyIn...)
		acceptOff = ok && v == ProxyOff
		if ok {
			switch {
			case v != ProxyOff && proto == UDP:
				p.errorf(e.line(), "%s %s is not available on a udp service: a PROXY header precedes a TCP stream", name, v)
			case v != ProxyOff && len(a.TrustedProxies) == 0 && trustedLine == 0:
				p.errorf(e.line(), "%s %s needs trusted_proxies: the addresses of the balancers allowed to send a PROXY header (anyone else could claim any client address)", name, v)
			case v != ProxyOff && len(a.TrustedProxies) == 0:
				p.errorf(trustedLine, "%s is empty while accept_proxy_protocol is %s: list the balancers allowed to send a PROXY header", q("trusted_proxies"), v)
			default:
				a.AcceptProxyProtocol = v
			}
		}
	}
	if trustedLine > 0 && len(a.TrustedProxies) > 0 && acceptOff {
		p.warnf(trustedLine, "%s has no effect while accept_proxy_protocol is off", q("trusted_proxies"))
	}
	return a
}
