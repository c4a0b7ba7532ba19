package config

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// This file holds the YAML node helpers of the parser: alias resolution,
// mapping entries with merge keys, and typed scalar reads that report a
// precise, line-numbered issue instead of failing.

// entry is one key/value pair of a mapping, after merge keys were applied.
type entry struct {
	key, val *yaml.Node
	name     string
}

// line is the line the value is on, or the key's line when the value has none.
func (e entry) line() int {
	if e.val != nil && e.val.Line > 0 {
		return e.val.Line
	}
	return e.key.Line
}

// resolve follows aliases to the node they name. A nil node or a broken
// alias chain resolves to a null scalar so that callers never see nil.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 16; i++ {
		n = n.Alias
	}
	if n == nil || n.Kind == yaml.AliasNode {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe says what a node is, for error messages: "the string "x"",
// "a list", "the integer 5".
func describe(n *yaml.Node) string {
	n = resolve(n)
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		v := clip(n.Value)
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("the string %q", v)
		case "!!int":
			return "the integer " + v
		case "!!float":
			return "the number " + v
		case "!!bool":
			return "the boolean " + v
		case "!!null":
			return "no value"
		case "!!timestamp":
			return "the timestamp " + v
		case "!!binary":
			return "binary data"
		default:
			return "a value tagged " + clip(n.ShortTag())
		}
	}
	return "an unexpected YAML node"
}

// clip shortens a value quoted in a message.
func clip(s string) string {
	const max = 40
	if r := []rune(s); len(r) > max {
		return string(r[:max]) + "…"
	}
	return s
}

// qualify names a key inside its parent: "port", "runtime.engine",
// "backends[2].host".
func qualify(where, key string) string {
	if where == "" {
		return key
	}
	return where + "." + key
}

// maxMergeDepth bounds nested merge keys; merged mappings are also visited
// at most once, so a document of aliases cannot blow up the walk.
const maxMergeDepth = 32

// mapping returns the entries of a mapping node in file order, with YAML
// merge keys (<<: *anchor, <<: [*a, *b]) applied: keys written in the
// mapping win over merged ones, earlier merged mappings win over later
// ones. Keys that are not plain scalars and keys set twice are reported.
func (p *parser) mapping(n *yaml.Node, where string) []entry {
	var out []entry
	seen := map[string]int{}
	visited := map[*yaml.Node]bool{}

	var walk func(m *yaml.Node, merged bool, depth int)
	walk = func(m *yaml.Node, merged bool, depth int) {
		if visited[m] {
			return
		}
		visited[m] = true
		var merges []*yaml.Node
		for i := 0; i+1 < len(m.Content); i += 2 {
			if !p.visit() {
				return
			}
			k, v := resolve(m.Content[i]), m.Content[i+1]
			line := m.Content[i].Line
			if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
				merges = append(merges, v)
				continue
			}
			if k.Kind != yaml.ScalarNode || isNull(k) {
				p.errorf(line, "%s: keys must be plain names, got %s", whereName(where), describe(k))
				continue
			}
			name := k.Value
			if first, dup := seen[name]; dup {
				if !merged {
					p.errorf(line, "%s is set twice (first on line %d)", qualify(where, name), first)
				}
				continue
			}
			seen[name] = line
			out = append(out, entry{key: m.Content[i], val: v, name: name})
		}
		for _, mv := range merges {
			line := mv.Line
			mv = resolve(mv)
			if depth >= maxMergeDepth {
				p.errorf(line, "%s: merge keys (<<) nested too deeply", whereName(where))
				return
			}
			switch mv.Kind {
			case yaml.MappingNode:
				walk(mv, true, depth+1)
			case yaml.SequenceNode:
				for _, item := range mv.Content {
					it := resolve(item)
					if it.Kind != yaml.MappingNode {
						p.errorf(item.Line, "%s: << must merge mappings, got %s", whereName(where), describe(it))
						continue
					}
					walk(it, true, depth+1)
				}
			default:
				p.errorf(line, "%s: << must merge a mapping or a list of mappings, got %s", whereName(where), describe(mv))
			}
		}
	}
	walk(n, false, 0)
	return out
}

func whereName(where string) string {
	if where == "" {
		return "top level"
	}
	return where
}

// intValue reads an integer in [min, max]. ok is false (and an issue is
// recorded) when the value is missing, not an integer, or out of range.
func (p *parser) intValue(e entry, name string, min, max int64, unit string) (int64, bool) {
	v := resolve(e.val)
	line := e.line()
	want := fmt.Sprintf("an integer from %d to %d%s", min, max, unit)
	if v.Kind == yaml.ScalarNode && leadingZero(v.Value) {
		p.errorf(line, "%s must be %s, got %s: write it without leading zeros (YAML reads 010 as octal)", name, want, v.Value)
		return 0, false
	}
	switch {
	case isNull(v):
		p.errorf(line, "%s has no value (remove the line to use the default)", name)
	case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!int":
		i, err := strconv.ParseInt(strings.ReplaceAll(v.Value, "_", ""), 0, 64)
		if err != nil {
			p.errorf(line, "%s must be %s, got %s (out of range)", name, want, clip(v.Value))
			return 0, false
		}
		if i < min || i > max {
			p.errorf(line, "%s must be %s, got %d", name, want, i)
			return 0, false
		}
		return i, true
	default:
		p.errorf(line, "%s must be %s, got %s", name, want, describe(v))
	}
	return 0, false
}

// leadingZero reports a plain decimal number written with leading zeros
// ("08080"), which YAML reads as octal or as a float.
func leadingZero(s string) bool {
	s = strings.TrimLeft(s, "+-")
	if len(s) < 2 || s[0] != '0' {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// strValue reads a string. want describes the expected value for the
// message ("a string", "one of simple, advanced").
func (p *parser) strValue(e entry, name, want string) (string, bool) {
	v := resolve(e.val)
	switch {
	case isNull(v):
		p.errorf(e.line(), "%s has no value (remove the line to use the default)", name)
	case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str":
		return v.Value, true
	default:
		p.errorf(e.line(), "%s must be %s, got %s", name, want, describe(v))
	}
	return "", false
}

// enumValue reads a string that must be one of choices.
func (p *parser) enumValue(e entry, name string, choices ...string) (string, bool) {
	want := "one of " + strings.Join(choices, ", ")
	s, ok := p.strValue(e, name, want)
	if !ok {
		return "", false
	}
	for _, c := range choices {
		if s == c {
			return s, true
		}
	}
	p.errorf(e.line(), "%s must be %s; got %q", name, want, clip(s))
	return "", false
}

// boolValue reads true or false.
func (p *parser) boolValue(e entry, name string) (bool, bool) {
	v := resolve(e.val)
	switch {
	case isNull(v):
		p.errorf(e.line(), "%s has no value (remove the line to use the default)", name)
	case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!bool":
		b, err := strconv.ParseBool(strings.ToLower(v.Value))
		if err == nil {
			return b, true
		}
		p.errorf(e.line(), "%s must be true or false, got %s", name, describe(v))
	default:
		p.errorf(e.line(), "%s must be true or false, got %s", name, describe(v))
	}
	return false, false
}

// suggest returns ` (did you mean "x"?)` for the known name closest to an
// unknown key, or "" when nothing is close.
func suggest(key string, known []string) string {
	best, bestD := "", 3
	lk := strings.ToLower(key)
	for _, k := range known {
		if d := distance(lk, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

// distance is the Levenshtein distance between a and b, capped for long
// inputs (keys longer than 64 bytes are never close to a known key).
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
