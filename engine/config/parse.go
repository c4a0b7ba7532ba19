package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Defaults of the top-level keys (docs/configuration.md, Top-level keys).
const (
	DefaultMode        = ModeSimple
	DefaultPort        = 9295
	DefaultBindAddress = "0.0.0.0"
	DefaultMethod      = RoundRobin
	DefaultLogLevel    = "info"
	DefaultWeight      = 1
	// MaxWeight is the largest backend weight.
	MaxWeight = 256
	// MaxFileSize is the largest config file Parse accepts.
	MaxFileSize = 1 << 20
)

// goos is the operating system the engine rule is checked against
// (engine: gnet is Linux only); a variable so tests can pretend.
var goos = runtime.GOOS

var (
	// singleKeys are the service keys that stand at the top level in the
	// single-service form.
	singleKeys = []string{"port", "bind_address", "method", "backends", "routes", "health_check",
		"allow", "deny", "max_connections_per_source", "connection_rate_per_source", "accept_proxy_protocol", "trusted_proxies",
		"on_backend_down"}
	topKeys = []string{"mode", "port", "bind_address", "method", "log_level", "backends", "runtime", "services",
		"routes", "health_check", "allow", "deny", "max_connections_per_source", "connection_rate_per_source",
		"accept_proxy_protocol", "trusted_proxies", "on_backend_down"}
	backendKeys = []string{"host", "port", "weight"}
	methods     = []string{string(RoundRobin), string(LeastConnections), string(RandomTwo), string(SourceHash)}
	logLevels   = map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}
)

// MaxEntries bounds the work Parse does on one file: the mapping keys and
// list entries it visits, counted again each time an alias brings them in
// again. A file of plain YAML within MaxFileSize stays far below it; a small
// file of aliases that repeat each other does not.
const MaxEntries = 500_000

// parser collects issues while walking one document.
type parser struct {
	errs, warns []Issue
	entries     int // visited so far, for MaxEntries
}

// visit counts one mapping key or list entry about to be read. It returns
// false once MaxEntries is passed (then the caller stops reading); the
// first time, it records why.
func (p *parser) visit() bool {
	p.entries++
	if p.entries == MaxEntries+1 {
		p.errorf(0, "the file expands to more than %d keys and list entries (aliases that repeat large parts of it?); bal reads at most that many", MaxEntries)
	}
	return p.entries <= MaxEntries
}

func (p *parser) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, Issue{Message: fmt.Sprintf(format, args...), Line: line})
}

func (p *parser) warnf(line int, format string, args ...any) {
	p.warns = append(p.warns, Issue{Message: fmt.Sprintf(format, args...), Line: line})
}

// Parse validates a config file's content and returns its Snapshot. path is
// only used in messages and copied to Snapshot.Path. On failure the error is
// an *Error holding every problem found (errors.Is(err, ErrInvalid)).
func Parse(data []byte, path string) (*Snapshot, error) {
	p := &parser{}
	s, meta := p.parse(data)
	s.Path = path
	p.errs = dedupIssues(sortIssues(p.errs))
	p.warns = dedupIssues(sortIssues(p.warns))
	if len(p.errs) > 0 {
		return nil, &Error{Path: path, Issues: p.errs, Warnings: p.warns, Mode: meta.mode, BackendCount: meta.backends}
	}
	s.Warnings = p.warns
	return s, nil
}

// dedupIssues drops an issue equal to one before it (a rule checked once
// per service can find the same thing twice).
func dedupIssues(is []Issue) []Issue {
	seen := make(map[Issue]bool, len(is))
	out := is[:0]
	for _, x := range is {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// sortIssues orders issues by line, stably; issues without a line go last.
func sortIssues(is []Issue) []Issue {
	key := func(i int) int {
		if is[i].Line <= 0 {
			return math.MaxInt
		}
		return is[i].Line
	}
	sort.SliceStable(is, func(a, b int) bool { return key(a) < key(b) })
	return is
}

// meta is what Parse can tell about a broken file.
type meta struct {
	mode     Mode
	backends int
}

// decode is dec.Decode that turns a panic inside yaml.v3 (not our code: it
// has had panics on hostile input) into an error, so Parse never panics.
func decode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the YAML parser failed: %v", r)
		}
	}()
	return dec.Decode(n)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document decodes exactly one YAML document and returns its root mapping,
// or nil after recording why there is none.
func (p *parser) document(data []byte) *yaml.Node {
	if len(data) > MaxFileSize {
		p.errorf(0, "the file is %d bytes; a config file may be at most %d", len(data), MaxFileSize)
		return nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := decode(dec, &doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(0, "the file is empty: it needs at least a backends: list")
		} else {
			p.yamlError(err, data)
		}
		return nil
	}
	var extra yaml.Node
	switch err := decode(dec, &extra); {
	case err == nil:
		p.errorf(extra.Line, "the file holds more than one YAML document (a second one starts here); bal reads one")
		return nil
	case !errors.Is(err, io.EOF):
		p.yamlError(err, data)
		return nil
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	root = resolve(root)
	switch {
	case root.Kind == yaml.DocumentNode || isNull(root):
		p.errorf(0, "the file is empty: it needs at least a backends: list")
		return nil
	case root.Kind != yaml.MappingNode:
		p.errorf(root.Line, "the top level must be a mapping of keys (mode, port, backends, ...), got %s", describe(root))
		return nil
	}
	return root
}

// yamlError records a YAML syntax error with its line: yaml.v3's when it
// gave one, else the line a tab in the indentation or an unknown alias is on.
func (p *parser) yamlError(err error, data []byte) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	lines := strings.Split(string(data), "\n")
	tabbed := func(i int) bool {
		l := lines[i]
		return strings.Contains(l[:len(l)-len(strings.TrimLeft(l, " \t"))], "\t")
	}
	switch {
	case strings.Contains(msg, "cannot start any token"):
		if line > 0 && line <= len(lines) && tabbed(line-1) {
			msg += " (a tab in the indentation: YAML indents with spaces only)"
			break
		}
		for i := range lines {
			if line == 0 && tabbed(i) {
				line = i + 1
				msg += " (a tab in the indentation: YAML indents with spaces only)"
				break
			}
		}
	case line == 0:
		if m := unknownAnchor.FindStringSubmatch(msg); m != nil {
			for i, l := range lines {
				if strings.Contains(l, "*"+m[1]) {
					line = i + 1
					break
				}
			}
		}
	}
	p.errorf(line, "invalid YAML: %s", msg)
}

var unknownAnchor = regexp.MustCompile(`unknown anchor '([^']+)' referenced`)

func (p *parser) parse(data []byte) (*Snapshot, meta) {
	s := &Snapshot{
		Mode:        DefaultMode,
		Port:        DefaultPort,
		BindAddress: DefaultBindAddress,
		Method:      DefaultMethod,
		LogLevel:    slog.LevelInfo,
	}
	var m meta
	root := p.document(data)
	if root == nil {
		return s, m
	}

	top := map[string]entry{}
	for _, e := range p.mapping(root, "") {
		switch {
		case e.name == "name" || e.name == "protocol":
			p.errorf(e.key.Line, "unknown key %q: the single-service form is always one tcp service named %s; write a services: list to name services and set their protocol", e.name, DefaultServiceName)
			continue
		case !slices.Contains(topKeys, e.name):
			p.errorf(e.key.Line, "unknown key %q%s", clip(e.name), suggest(e.name, topKeys))
			continue
		}
		top[e.name] = e
	}

	modeOK := true
	if e, ok := top["mode"]; ok {
		v, ok := p.enumValue(e, "mode", string(ModeSimple), string(ModeAdvanced))
		modeOK = ok
		if ok {
			s.Mode = Mode(v)
		}
	}
	if modeOK {
		m.mode = s.Mode
	}
	if e, ok := top["log_level"]; ok {
		if v, ok := p.strValue(e, "log_level", "one of debug, info, warn, error"); ok {
			if lv, known := logLevels[strings.ToLower(v)]; known {
				s.LogLevel = lv
			} else {
				p.errorf(e.line(), "log_level must be one of debug, info, warn, error; got %q", clip(v))
			}
		}
	}

	var svcs []*svcParse
	if se, ok := top["services"]; ok {
		for _, k := range singleKeys {
			if e, ok := top[k]; ok {
				p.errorf(e.key.Line, "%s is a key of the single-service form; with services: (line %d) set it inside each service", k, se.key.Line)
			}
		}
		svcs = p.services(se)
	} else {
		ents := map[string]entry{}
		for _, k := range singleKeys {
			if e, ok := top[k]; ok {
				ents[k] = e
			}
		}
		svcs = []*svcParse{p.service(ents, "", 0, true)}
		s.Single = true
	}
	for _, sp := range svcs {
		m.backends += sp.entries
	}

	var topRT *rtBlock
	if e, ok := top["runtime"]; ok {
		if s.Mode == ModeSimple && modeOK {
			p.warnf(e.key.Line, "runtime is ignored in simple mode; set mode: advanced")
		}
		topRT = p.runtimeBlock(e, "runtime", "")
		if topRT.vals.Engine == EngineGnet && goos != "linux" {
			p.errorf(topRT.set["engine"], "runtime.engine gnet needs Linux (this is %s); use auto or std", goos)
		}
	}
	p.resolveRuntimes(s, svcs, topRT, modeOK)
	p.crossChecks(s, svcs, topRT)

	s.Services = make([]Service, 0, len(svcs))
	for _, sp := range svcs {
		s.Services = append(s.Services, sp.svc)
	}
	if len(s.Services) > 0 {
		first := &s.Services[0]
		s.Port, s.BindAddress, s.Method, s.Backends = first.Port, first.BindAddress, first.Method, first.Backends
	}
	return s, m
}

// backends reads a backends: list named name ("backends",
// "services[1].routes[0].backends"). It returns the valid backends and the
// number of entries in the list. An empty list is an error unless
// emptyOK; emptyHint ends that error's message. Duplicates are errors
// within the one list (one pool); the same backend may be in two pools.
func (p *parser) backends(e entry, name string, emptyOK bool, emptyHint string) ([]Backend, int) {
	v := resolve(e.val)
	switch {
	case isNull(v) || v.Kind == yaml.SequenceNode && len(v.Content) == 0:
		if !emptyOK {
			p.errorf(e.line(), "%s is empty: list at least one backend as {host, port}%s", name, emptyHint)
		}
		return nil, 0
	case v.Kind != yaml.SequenceNode:
		p.errorf(e.line(), "%s must be a list of {host, port} entries, got %s", name, describe(v))
		return nil, 0
	}
	var out []Backend
	first := map[string]int{} // Key → index in out
	for i, item := range v.Content {
		if !p.visit() {
			break
		}
		where := fmt.Sprintf("%s[%d]", name, i)
		line := item.Line
		n := resolve(item)
		if n.Kind != yaml.MappingNode {
			hint := ""
			if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, ":") {
				hint = " (write it as host: and port: on two lines)"
			}
			p.errorf(line, "%s must be a mapping with host and port, got %s%s", where, describe(n), hint)
			continue
		}
		b, ok := p.backend(n, where, line)
		if !ok {
			continue
		}
		if j, dup := first[b.Key()]; dup {
			p.errorf(b.Line, "%s %s is a duplicate of the backend on line %d", where, b.Address(), out[j].Line)
			continue
		}
		first[b.Key()] = len(out)
		out = append(out, b)
	}
	return out, len(v.Content)
}

func (p *parser) backend(n *yaml.Node, where string, line int) (Backend, bool) {
	b := Backend{Weight: DefaultWeight, Line: line}
	ok := true
	var hostSet, portSet bool
	for _, e := range p.mapping(n, where) {
		name := qualify(where, e.name)
		switch e.name {
		case "host":
			hostSet = true
			v, good := p.strValue(e, name, "an IP address or host name")
			if !good {
				ok = false
				continue
			}
			h := stripBrackets(v)
			if why := checkHost(h); why != "" {
				p.errorf(e.line(), "%s", hostIssue(name, v, why))
				ok = false
				continue
			}
			b.Host = h
		case "port":
			portSet = true
			v, good := p.intValue(e, name, 1, 65535, "")
			ok = ok && good
			b.Port = int(v)
		case "weight":
			v, good := p.intValue(e, name, 1, MaxWeight, "")
			ok = ok && good
			b.Weight = int(v)
		default:
			p.errorf(e.key.Line, "%s: unknown key %q%s", where, clip(e.name), suggest(e.name, backendKeys))
			ok = false
		}
	}
	if !hostSet {
		p.errorf(line, "%s has no host", where)
		ok = false
	}
	if !portSet {
		p.errorf(line, "%s has no port", where)
		ok = false
	}
	if ok && isUnspecified(b.Host) {
		p.warnf(line, "%s host %s is the unspecified address, which reaches this machine only by accident; use 127.0.0.1 or ::1", where, b.Host)
	}
	return b, ok
}

func lookupRuntimeKey(name string) (runtimeKey, bool) {
	for _, k := range runtimeKeys {
		if k.name == name {
			return k, true
		}
	}
	return runtimeKey{}, false
}

// address reads metrics_address: "" (off) or host:port with a numeric port.
func (p *parser) address(e entry, name string) (string, bool) {
	v, ok := p.strValue(e, name, `"host:port" or ""`)
	if !ok || v == "" {
		return v, ok
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		p.errorf(e.line(), "%s must be host:port (for example 127.0.0.1:9100), got %q", name, clip(v))
		return "", false
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		p.errorf(e.line(), "%s port must be a number from 1 to 65535, got %q", name, clip(port))
		return "", false
	}
	if host != "" {
		if why := checkHost(host); why != "" {
			p.errorf(e.line(), "%s", hostIssue(name+" host", host, why))
			return "", false
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(n)), true
}

// hostIssue words a checkHost problem: `bind_address "x y" is not a valid
// IP address or host name`, `backends[0].host must not be empty`.
func hostIssue(name, value, why string) string {
	if value == "" {
		return name + " " + why
	}
	return fmt.Sprintf("%s %q %s", name, clip(value), why)
}
