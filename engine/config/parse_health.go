package config

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Limits of health_check values.
const (
	// MaxCheckExpect is the longest expect: a probe reads at most this much
	// of the reply, so a longer string could never match.
	MaxCheckExpect = 4096
	// MaxCheckSend is the longest send: it fits one UDP datagram.
	MaxCheckSend = 65507
	// DefaultHTTPPath is the path an http check asks for when none is set.
	DefaultHTTPPath = "/"
)

var (
	healthKeys   = []string{"type", "port", "send", "expect", "http_path", "http_host", "http_status"}
	checkTypes   = []string{CheckTCP, CheckSendExpect, CheckHTTP}
	defaultHTTPs = []StatusRange{{200, 399}}
)

// defaultHealthCheck is a service's check when it sets none: a TCP connect,
// or on UDP passive checks only.
func defaultHealthCheck(p Protocol) HealthCheck {
	if p == UDP {
		return HealthCheck{}
	}
	return HealthCheck{Type: CheckTCP}
}

// healthCheck reads a health_check: block (name "health_check",
// "services[0].routes[1].health_check") for a service of protocol proto.
func (p *parser) healthCheck(e entry, name string, proto Protocol) (HealthCheck, bool) {
	var hc HealthCheck
	v := resolve(e.val)
	if isNull(v) {
		p.errorf(e.line(), "%s has no value (remove the line for the default check)", name)
		return hc, false
	}
	if v.Kind != yaml.MappingNode {
		p.errorf(e.line(), "%s must be a mapping of keys (type, port, ...), got %s", name, describe(v))
		return hc, false
	}
	ents := map[string]entry{}
	ok := true
	for _, he := range p.mapping(v, name) {
		if !slices.Contains(healthKeys, he.name) {
			p.errorf(he.key.Line, "%s: unknown key %q%s", name, clip(he.name), suggest(he.name, healthKeys))
			ok = false
			continue
		}
		ents[he.name] = he
	}

	typeOK := true
	if te, has := ents["type"]; has {
		t, good := p.enumValue(te, name+".type", checkTypes...)
		switch {
		case !good:
			typeOK = false
		case proto == UDP && t != CheckSendExpect:
			p.errorf(te.line(), "%s.type %s is not available on a udp service: use send_expect (one datagram out, a reply back), or leave health_check out for passive checks only", name, t)
			typeOK = false
		default:
			hc.Type = t
		}
	} else if proto == UDP {
		p.errorf(e.key.Line, "%s has no type: a udp service can only use type send_expect (leave health_check out for passive checks only)", name)
		typeOK = false
	} else {
		hc.Type = CheckTCP
	}
	ok = ok && typeOK

	// only reports a key that the check's type does not use.
	only := func(key string, types ...string) bool {
		ke, has := ents[key]
		if !has {
			return false
		}
		if typeOK && !slices.Contains(types, hc.Type) {
			p.errorf(ke.key.Line, "%s.%s is only used by type %s (this check is %s)", name, key, strings.Join(types, " or "), hc.Type)
			ok = false
			return false
		}
		return true
	}

	if pe, has := ents["port"]; has {
		n, good := p.intValue(pe, name+".port", 1, 65535, "")
		hc.Port, ok = int(n), ok && good
	}
	if only("send", CheckSendExpect) {
		b, good := p.bytesValue(ents["send"], name+".send", MaxCheckSend)
		hc.Send, ok = b, ok && good
	}
	if only("expect", CheckSendExpect, CheckHTTP) {
		b, good := p.bytesValue(ents["expect"], name+".expect", MaxCheckExpect)
		if good && len(b) == 0 {
			p.errorf(ents["expect"].line(), "%s.expect is empty: every reply would match; write the bytes the reply must contain", name)
			good = false
		}
		hc.Expect, ok = b, ok && good
	}
	if typeOK && hc.Type == CheckSendExpect && ents["expect"].key == nil {
		p.errorf(e.key.Line, "%s: type send_expect needs expect: the bytes the reply must contain", name)
		ok = false
	}
	if only("http_path", CheckHTTP) {
		s, good := p.strValue(ents["http_path"], name+".http_path", `a path starting with "/"`)
		if good {
			if why := httpPathIssue(s); why != "" {
				p.errorf(ents["http_path"].line(), "%s.http_path %q %s", name, clip(s), why)
				good = false
			}
		}
		hc.HTTPPath, ok = s, ok && good
	}
	if only("http_host", CheckHTTP) {
		s, good := p.strValue(ents["http_host"], name+".http_host", "a host name, optionally with :port")
		if good {
			if why := httpHostIssue(s); why != "" {
				p.errorf(ents["http_host"].line(), "%s.http_host %q %s", name, clip(s), why)
				good = false
			}
		}
		hc.HTTPHost, ok = s, ok && good
	}
	if only("http_status", CheckHTTP) {
		rs, good := p.statusRanges(ents["http_status"], name+".http_status")
		hc.HTTPStatus, ok = rs, ok && good
	}
	if hc.Type == CheckHTTP {
		if hc.HTTPPath == "" {
			hc.HTTPPath = DefaultHTTPPath
		}
		if hc.HTTPStatus == nil {
			hc.HTTPStatus = slices.Clone(defaultHTTPs)
		}
	}
	return hc, ok
}

// bytesValue reads a string as bytes: plain or quoted YAML ("\r\n" and
// "\x00" escapes work in double quotes), or !!binary base64. At most max
// bytes.
func (p *parser) bytesValue(e entry, name string, max int) ([]byte, bool) {
	v := resolve(e.val)
	var b []byte
	switch {
	case isNull(v):
		p.errorf(e.line(), "%s has no value", name)
		return nil, false
	case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str":
		b = scalarBytes(v)
	case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!binary":
		d, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(v.Value), ""))
		if err != nil {
			p.errorf(e.line(), "%s: !!binary must be base64: %v", name, err)
			return nil, false
		}
		b = d
	default:
		p.errorf(e.line(), "%s must be a string (quote it: \"PING\\r\\n\"), got %s", name, describe(v))
		return nil, false
	}
	if len(b) > max {
		p.errorf(e.line(), "%s is %d bytes; at most %d", name, len(b), max)
		return nil, false
	}
	return b, true
}

// scalarBytes is a string scalar's bytes. A double-quoted string whose
// characters are all below U+0100 gives one byte per character, so that the
// escapes "\x00" to "\xff" are those bytes (YAML reads "\xd2" as the
// character U+00D2, which UTF-8 would write as two bytes); any other string
// gives its UTF-8 bytes.
func scalarBytes(v *yaml.Node) []byte {
	if v.Style&yaml.DoubleQuotedStyle != 0 {
		b := make([]byte, 0, len(v.Value))
		for _, r := range v.Value {
			if r > 0xff {
				return []byte(v.Value)
			}
			b = append(b, byte(r))
		}
		return b
	}
	return []byte(v.Value)
}

// httpPathIssue checks an http_path: it starts with "/" and holds no
// space or control character (it goes into the request line as is).
func httpPathIssue(s string) string {
	if !strings.HasPrefix(s, "/") {
		return `must start with "/"`
	}
	if len(s) > 2048 {
		return "is longer than 2048 bytes"
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return "must not hold spaces or control characters (percent-encode them: %20)"
		}
	}
	return ""
}

// httpHostIssue checks an http_host: a host name or IP literal, optionally
// with a numeric port ("example.com", "example.com:8080", "[::1]:80").
func httpHostIssue(s string) string {
	host := s
	if h, port, err := splitHostPortOpt(s); err == nil && port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "has a port that is not a number from 1 to 65535"
		}
		host = h
	}
	host = stripBrackets(host)
	if why := checkHost(host); why != "" {
		return why
	}
	return ""
}

// splitHostPortOpt splits "host:port", "[v6]:port"; a host without a port
// (including a bare IPv6 literal) returns port "".
func splitHostPortOpt(s string) (host, port string, err error) {
	if strings.HasPrefix(s, "[") {
		if i := strings.LastIndex(s, "]:"); i > 0 {
			return s[1:i], s[i+2:], nil
		}
		return s, "", nil
	}
	if strings.Count(s, ":") == 1 {
		i := strings.IndexByte(s, ':')
		return s[:i], s[i+1:], nil
	}
	return s, "", nil
}

// statusRanges reads http_status: a code (200), a list of codes and ranges
// ([200, 204, "301-302"]) or a string ("200-399", "200,204,301-302").
func (p *parser) statusRanges(e entry, name string) ([]StatusRange, bool) {
	v := resolve(e.val)
	var parts []listItem // each a code or "low-high"
	switch {
	case isNull(v):
		p.errorf(e.line(), "%s has no value (remove the line for the default 200-399)", name)
		return nil, false
	case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!int":
		parts = []listItem{{v.Value, e.line()}}
	case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str":
		for _, s := range strings.Split(v.Value, ",") {
			parts = append(parts, listItem{strings.TrimSpace(s), e.line()})
		}
	case v.Kind == yaml.SequenceNode:
		if len(v.Content) == 0 {
			p.errorf(e.line(), "%s is empty: list the accepted codes, or remove the line for the default 200-399", name)
			return nil, false
		}
		for _, item := range v.Content {
			if !p.visit() {
				break
			}
			n := resolve(item)
			if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!str") {
				p.errorf(item.Line, "%s entries must be codes or \"low-high\" ranges, got %s", name, describe(n))
				return nil, false
			}
			parts = append(parts, listItem{strings.TrimSpace(n.Value), item.Line})
		}
	default:
		p.errorf(e.line(), "%s must be a code, a list of codes or a string like \"200-399\", got %s", name, describe(v))
		return nil, false
	}
	ok := true
	var out []StatusRange
	for _, part := range parts {
		r, why := parseStatusRange(part.value)
		if why != "" {
			p.errorf(part.line, "%s %q %s", name, clip(part.value), why)
			ok = false
			continue
		}
		out = append(out, r)
	}
	return out, ok
}

// parseStatusRange reads "200" or "200-399".
func parseStatusRange(s string) (StatusRange, string) {
	lo, hi, isRange := strings.Cut(s, "-")
	code := func(c string) (int, bool) {
		c = strings.TrimSpace(c)
		if len(c) != 3 || strings.Trim(c, "0123456789") != "" {
			return 0, false
		}
		n, _ := strconv.Atoi(c)
		return n, n >= 100 && n <= 599
	}
	l, okL := code(lo)
	h := l
	okH := true
	if isRange {
		h, okH = code(hi)
	}
	switch {
	case s == "":
		return StatusRange{}, "is empty: write a code from 100 to 599 or a range like 200-399"
	case !okL || !okH:
		return StatusRange{}, "is not a status code from 100 to 599 or a range of them (200-399)"
	case l > h:
		return StatusRange{}, fmt.Sprintf("is a range whose low end %d is above its high end %d", l, h)
	}
	return StatusRange{Low: l, High: h}, ""
}
