package metricstest

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrFormat wraps every parse error.
var ErrFormat = errors.New("invalid exposition")

// Sample is one sample line.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Family is one metric family: its HELP and TYPE and its samples in order.
type Family struct {
	Name, Type, Help string
	Samples          []Sample
}

// Exposition is a parsed scrape.
type Exposition struct {
	Families []*Family
	byName   map[string]*Family
}

var types = []string{"counter", "gauge", "untyped"}

// Parse parses text strictly (see the package comment). Histograms and
// summaries are not accepted: bal exposes neither.
func Parse(text string) (*Exposition, error) {
	x := &Exposition{byName: map[string]*Family{}}
	if text == "" {
		return x, nil
	}
	if !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("%w: does not end with a newline", ErrFormat)
	}
	if !utf8.ValidString(text) {
		return nil, fmt.Errorf("%w: not valid UTF-8", ErrFormat)
	}
	var cur *Family
	seen := map[string]bool{}
	// open returns the family name's record, creating it; a family that was
	// left (another family started after it) cannot come back.
	open := func(name string) (*Family, error) {
		if cur != nil && cur.Name == name {
			return cur, nil
		}
		if x.byName[name] != nil {
			return nil, fmt.Errorf("family %s appears in two places", name)
		}
		if cur != nil {
			if err := cur.complete(); err != nil {
				return nil, err
			}
		}
		cur = &Family{Name: name}
		x.byName[name] = cur
		x.Families = append(x.Families, cur)
		return cur, nil
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	for i, line := range lines {
		fail := func(err error) (*Exposition, error) {
			return nil, fmt.Errorf("%w: line %d %q: %w", ErrFormat, i+1, line, err)
		}
		switch {
		case line == "":
			return fail(errors.New("empty line"))
		case strings.HasPrefix(line, "# HELP ") || strings.HasPrefix(line, "# TYPE "):
			kind, rest := line[2:6], line[7:]
			name, arg, _ := strings.Cut(rest, " ")
			if !validMetricName(name) {
				return fail(fmt.Errorf("bad metric name %q", name))
			}
			f, err := open(name)
			if err != nil {
				return fail(err)
			}
			if len(f.Samples) > 0 {
				return fail(fmt.Errorf("%s after the samples of %s", kind, name))
			}
			if kind == "HELP" {
				if f.Help != "" {
					return fail(errors.New("second HELP"))
				}
				h, err := unescape(arg, false)
				if err != nil {
					return fail(err)
				}
				if h == "" {
					return fail(errors.New("empty HELP"))
				}
				f.Help = h
			} else {
				if f.Type != "" {
					return fail(errors.New("second TYPE"))
				}
				if !slices.Contains(types, arg) {
					return fail(fmt.Errorf("type %q is not one of %v", arg, types))
				}
				f.Type = arg
			}
		case strings.HasPrefix(line, "#"):
			// Another comment: allowed by the format, carries nothing.
		default:
			s, err := parseSample(line)
			if err != nil {
				return fail(err)
			}
			f, err := open(s.Name)
			if err != nil {
				return fail(err)
			}
			if f.Type == "" || f.Help == "" {
				return fail(fmt.Errorf("sample of %s before its HELP and TYPE", s.Name))
			}
			if f.Type == "counter" && (s.Value < 0 || math.IsNaN(s.Value)) {
				return fail(fmt.Errorf("counter value %v", s.Value))
			}
			key := seriesKey(s)
			if seen[key] {
				return fail(fmt.Errorf("duplicate series %s", key))
			}
			seen[key] = true
			f.Samples = append(f.Samples, s)
		}
	}
	if cur != nil {
		if err := cur.complete(); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrFormat, err)
		}
	}
	return x, nil
}

func (f *Family) complete() error {
	if f.Help == "" || f.Type == "" {
		return fmt.Errorf("family %s lacks its HELP or TYPE", f.Name)
	}
	return nil
}

func parseSample(line string) (Sample, error) {
	s := Sample{Labels: map[string]string{}}
	i := 0
	for i < len(line) && line[i] != '{' && line[i] != ' ' {
		i++
	}
	s.Name = line[:i]
	if !validMetricName(s.Name) {
		return s, fmt.Errorf("bad metric name %q", s.Name)
	}
	rest := line[i:]
	if strings.HasPrefix(rest, "{") {
		rest = rest[1:]
		for {
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			name, after, ok := strings.Cut(rest, "=\"")
			if !ok || !validLabelName(name) {
				return s, fmt.Errorf("bad label near %q", rest)
			}
			if _, dup := s.Labels[name]; dup {
				return s, fmt.Errorf("label %s twice", name)
			}
			val, n, err := quoted(after)
			if err != nil {
				return s, err
			}
			s.Labels[name] = val
			rest = after[n:]
			switch {
			case strings.HasPrefix(rest, ","):
				rest = rest[1:]
			case strings.HasPrefix(rest, "}"):
			default:
				return s, fmt.Errorf("expected , or } near %q", rest)
			}
		}
	}
	if !strings.HasPrefix(rest, " ") {
		return s, errors.New("no space before the value")
	}
	fields := strings.Split(rest[1:], " ")
	if len(fields) > 2 || fields[0] == "" {
		return s, fmt.Errorf("want a value and an optional timestamp, got %q", rest[1:])
	}
	v, err := parseValue(fields[0])
	if err != nil {
		return s, err
	}
	s.Value = v
	if len(fields) == 2 {
		if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
			return s, fmt.Errorf("bad timestamp %q", fields[1])
		}
	}
	return s, nil
}

func parseValue(s string) (float64, error) {
	switch s {
	case "NaN":
		return math.NaN(), nil
	case "+Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	}
	// Go's ParseFloat also takes "Inf", "infinity", hex and underscores,
	// which the format does not.
	for _, c := range s {
		if !strings.ContainsRune("0123456789+-.eE", c) {
			return 0, fmt.Errorf("bad value %q", s)
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("bad value %q", s)
	}
	return v, nil
}

// quoted reads a label value up to its closing quote; n counts the quote.
func quoted(s string) (val string, n int, err error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), i + 1, nil
		case '\n':
			return "", 0, errors.New("raw newline in a label value")
		case '\\':
			if i+1 == len(s) {
				return "", 0, errors.New("dangling backslash")
			}
			i++
			switch s[i] {
			case '\\':
				b.WriteByte('\\')
			case '"':
				b.WriteByte('"')
			case 'n':
				b.WriteByte('\n')
			default:
				return "", 0, fmt.Errorf("bad escape \\%c", s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, errors.New("unterminated label value")
}

// unescape undoes HELP escaping (\\ and \n; \" only in label values).
func unescape(s string, label bool) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			return "", errors.New("dangling backslash")
		}
		i++
		switch {
		case s[i] == '\\':
			b.WriteByte('\\')
		case s[i] == 'n':
			b.WriteByte('\n')
		case s[i] == '"' && label:
			b.WriteByte('"')
		default:
			// The format leaves other backslashes in HELP as they are.
			b.WriteByte('\\')
			b.WriteByte(s[i])
		}
	}
	return b.String(), nil
}

func validMetricName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9' {
			continue
		}
		return false
	}
	return true
}

func validLabelName(s string) bool {
	return s != "" && !strings.HasPrefix(s, "__") && !strings.Contains(s, ":") && validMetricName(s)
}

func seriesKey(s Sample) string {
	var b strings.Builder
	b.WriteString(s.Name)
	for _, k := range slices.Sorted(maps.Keys(s.Labels)) {
		fmt.Fprintf(&b, ",%s=%q", k, s.Labels[k])
	}
	return b.String()
}

// Family returns the family called name, or nil.
func (x *Exposition) Family(name string) *Family { return x.byName[name] }

// Value returns the value of the series name{labels...} (labels as name,
// value pairs; every label of the series must be given).
func (x *Exposition) Value(name string, labels ...string) (float64, bool) {
	f := x.byName[name]
	if f == nil || len(labels)%2 != 0 {
		return 0, false
	}
	for _, s := range f.Samples {
		if len(s.Labels) != len(labels)/2 {
			continue
		}
		match := true
		for i := 0; i < len(labels); i += 2 {
			if v, ok := s.Labels[labels[i]]; !ok || v != labels[i+1] {
				match = false
				break
			}
		}
		if match {
			return s.Value, true
		}
	}
	return 0, false
}

// Sum returns the sum of every series of family name whose labels include
// the given ones (name, value pairs), as PromQL's sum(name{labels}) does;
// ok is false when none matches.
func (x *Exposition) Sum(name string, labels ...string) (float64, bool) {
	f := x.byName[name]
	if f == nil || len(labels)%2 != 0 {
		return 0, false
	}
	var sum float64
	var ok bool
	for _, s := range f.Samples {
		match := true
		for i := 0; i < len(labels); i += 2 {
			if v, has := s.Labels[labels[i]]; !has || v != labels[i+1] {
				match = false
				break
			}
		}
		if match {
			sum, ok = sum+s.Value, true
		}
	}
	return sum, ok
}

// LabelValues returns the values label takes in family name, in order.
func (x *Exposition) LabelValues(name, label string) []string {
	var out []string
	if f := x.byName[name]; f != nil {
		for _, s := range f.Samples {
			if v, ok := s.Labels[label]; ok && !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
	}
	return out
}

// String renders x in canonical form (labels sorted by name): Parse of it
// gives back the same exposition.
func (x *Exposition) String() string {
	var b strings.Builder
	for _, f := range x.Families {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.Name, escape(f.Help, false), f.Name, f.Type)
		for _, s := range f.Samples {
			b.WriteString(s.Name)
			if len(s.Labels) > 0 {
				b.WriteByte('{')
				for i, k := range slices.Sorted(maps.Keys(s.Labels)) {
					if i > 0 {
						b.WriteByte(',')
					}
					fmt.Fprintf(&b, "%s=\"%s\"", k, escape(s.Labels[k], true))
				}
				b.WriteByte('}')
			}
			b.WriteByte(' ')
			b.WriteString(formatValue(s.Value))
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func formatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func escape(s string, label bool) string {
	r := strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	if label {
		r = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
	}
	return r.Replace(s)
}
