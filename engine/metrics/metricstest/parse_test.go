package metricstest

import (
	"errors"
	"math"
	"strings"
	"testing"
)

const head = "# HELP m A metric.\n# TYPE m gauge\n"

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name, text string
		series     []string // name, labels... of one series to look up
		want       float64
	}{
		{"empty", "", nil, 0},
		{"plain", head + "m 3\n", []string{"m"}, 3},
		{"labels", head + "m{a=\"x\",b=\"y\"} 1.5\n", []string{"m", "b", "y", "a", "x"}, 1.5},
		{"escapes", head + `m{a="q\"b\\n\n"} 2` + "\n", []string{"m", "a", "q\"b\\n\n"}, 2},
		{"ipv6 label", head + "m{backend=\"[::1]:9000\"} 1\n", []string{"m", "backend", "[::1]:9000"}, 1},
		{"timestamp", head + "m 7 1700000000000\n", []string{"m"}, 7},
		{"inf", head + "m +Inf\n", []string{"m"}, math.Inf(1)},
		{"exponent", head + "m 1e+06\n", []string{"m"}, 1e6},
		{"TYPE first", "# TYPE c_total counter\n# HELP c_total Help.\nc_total 1\n" + head, []string{"c_total"}, 1},
		{"other comment", "# just a comment\n" + head + "m 1\n", []string{"m"}, 1},
		{"help escapes", "# HELP m a\\\\b\\nc \\x\n# TYPE m gauge\nm 0\n", []string{"m"}, 0},
		{"family without samples", head, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, err := Parse(tt.text)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if tt.series != nil {
				v, ok := x.Value(tt.series[0], tt.series[1:]...)
				if !ok || v != tt.want {
					t.Fatalf("value %v %v, want %v", v, ok, tt.want)
				}
			}
			y, err := Parse(x.String())
			if err != nil || y.String() != x.String() {
				t.Fatalf("canonical form does not round-trip: %v\n%s", err, x.String())
			}
		})
	}
	x, _ := Parse("# HELP m a\\\\b\\nc \\x\n# TYPE m gauge\nm 0\n")
	if h := x.Family("m").Help; h != "a\\b\nc \\x" {
		t.Fatalf("help %q", h)
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct{ name, text string }{
		{"no final newline", head + "m 1"},
		{"empty line", head + "\nm 1\n"},
		{"no HELP", "# TYPE m gauge\nm 1\n"},
		{"no TYPE", "# HELP m h\nm 1\n"},
		{"sample before headers", "m 1\n# HELP m h\n# TYPE m gauge\n"},
		{"HELP twice", "# HELP m h\n" + head + "m 1\n"},
		{"TYPE twice", head + "# TYPE m gauge\nm 1\n"},
		{"empty HELP", "# HELP m \n# TYPE m gauge\nm 1\n"},
		{"bad type", "# HELP m h\n# TYPE m counterish\nm 1\n"},
		{"histogram", "# HELP m h\n# TYPE m histogram\nm 1\n"},
		{"family split", head + "m{a=\"1\"} 1\n# HELP n h\n# TYPE n gauge\nn 1\nm{a=\"2\"} 1\n"},
		{"headers after samples", head + "m 1\n# HELP m h\n"},
		{"duplicate series", head + "m{a=\"1\",b=\"2\"} 1\nm{b=\"2\",a=\"1\"} 2\n"},
		{"duplicate label", head + "m{a=\"1\",a=\"2\"} 1\n"},
		{"bad escape", head + `m{a="\t"} 1` + "\n"},
		{"unterminated", head + `m{a="x} 1` + "\n"},
		{"unquoted", head + "m{a=x} 1\n"},
		{"reserved label", head + "m{__name__=\"x\"} 1\n"},
		{"bad label name", head + "m{1a=\"x\"} 1\n"},
		{"bad metric name", "# HELP 1m h\n# TYPE 1m gauge\n1m 1\n"},
		{"no value", head + "m\n"},
		{"two spaces", head + "m  1\n"},
		{"bad value", head + "m one\n"},
		{"hex value", head + "m 0x10\n"},
		{"Go inf", head + "m Inf\n"},
		{"bad timestamp", head + "m 1 soon\n"},
		{"trailing field", head + "m 1 2 3\n"},
		{"negative counter", "# HELP c h\n# TYPE c counter\nc -1\n"},
		{"NaN counter", "# HELP c h\n# TYPE c counter\nc NaN\n"},
		{"invalid utf-8", head + "m{a=\"\xff\"} 1\n"},
		{"trailing comma junk", head + "m{a=\"1\"x} 1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse(tt.text); !errors.Is(err, ErrFormat) {
				t.Fatalf("Parse(%q) = %v, want ErrFormat", tt.text, err)
			}
		})
	}
}

func TestLabelValues(t *testing.T) {
	x, err := Parse(head + "m{b=\"x\",r=\"1\"} 1\nm{b=\"y\",r=\"1\"} 1\nm{b=\"x\",r=\"2\"} 1\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := x.LabelValues("m", "b"); len(got) != 2 || got[0] != "x" || got[1] != "y" {
		t.Fatalf("LabelValues = %v", got)
	}
	if _, ok := x.Value("m", "b", "x"); ok {
		t.Fatal("Value matched a series with more labels than given")
	}
}

// FuzzParse: no input panics, and whatever parses has a canonical form that
// parses to itself.
func FuzzParse(f *testing.F) {
	f.Add(head + "m{a=\"x\",b=\"y\"} 1.5\n")
	f.Add(head + `m{a="q\"b\\n\n"} 2 17` + "\n")
	f.Add("# HELP c h\\n\n# TYPE c counter\nc +Inf\n")
	f.Fuzz(func(t *testing.T, text string) {
		x, err := Parse(text)
		if err != nil {
			return
		}
		canon := x.String()
		y, err := Parse(canon)
		if err != nil {
			t.Fatalf("canonical form of %q does not parse: %v\n%s", text, err, canon)
		}
		if y.String() != canon {
			t.Fatalf("canonical form is not stable:\n%s\n%s", canon, y.String())
		}
	})
}

func TestCheckServices(t *testing.T) {
	services := []Service{
		{Name: "web", Pools: []Pool{{Name: "api", Route: true, Backends: []string{"a:1"}}, {Name: "default", Backends: []string{"a:1", "[::1]:2"}}}},
		{Name: "db", Pools: []Pool{{Name: "default", Backends: []string{"b:5432"}}}},
	}
	// full is the stable part of an exposition for services, without the
	// family drop.
	full := func(drop string) string {
		var b []string
		add := func(name, typ string, series ...string) {
			if name == drop {
				return
			}
			b = append(b, "# HELP "+name+" h.\n# TYPE "+name+" "+typ+"\n")
			for _, s := range series {
				b = append(b, name+s+" 0\n")
			}
		}
		perService := func(more ...string) []string {
			var out []string
			for _, s := range services {
				if len(more) == 0 {
					out = append(out, `{service="`+s.Name+`"}`)
				}
				for _, m := range more {
					out = append(out, `{service="`+s.Name+`",`+m+`}`)
				}
			}
			return out
		}
		perBackend := func(more ...string) []string {
			var out []string
			for _, s := range services {
				for _, p := range s.Pools {
					for _, be := range p.Backends {
						l := `service="` + s.Name + `",pool="` + p.Name + `",backend="` + be + `"`
						if len(more) == 0 {
							out = append(out, "{"+l+"}")
						}
						for _, m := range more {
							out = append(out, "{"+l+","+m+"}")
						}
					}
				}
			}
			return out
		}
		add("bal_connections_active", "gauge", perService()...)
		add("bal_connections_total", "counter", perService()...)
		add("bal_connections_rejected_total", "counter", perService(`reason="limit"`, `reason="acl"`, `reason="source_limit"`, `reason="source_rate"`, `reason="proxy_header"`, `reason="no_route"`)...)
		add("bal_backend_up", "gauge", perBackend()...)
		add("bal_backend_connections_active", "gauge", perBackend()...)
		add("bal_backend_connect_failures_total", "counter", perBackend(`reason="timeout"`, `reason="refused"`, `reason="other"`)...)
		add("bal_bytes_total", "counter", perService(`direction="client_to_backend"`, `direction="backend_to_client"`)...)
		add("bal_protection_mode", "gauge", perService()...)
		add("bal_reloads_total", "counter", `{result="ok"}`, `{result="error"}`)
		add("bal_route_matches_total", "counter", `{service="web",route="api"}`)
		add("bal_inspect_results_total", "counter", perService(`result="sni"`, `result="no_sni"`, `result="not_tls"`, `result="malformed"`, `result="timeout"`, `result="too_large"`, `result="closed"`)...)
		// No UDP service: the UDP families have no series.
		add("bal_udp_flows_active", "gauge")
		add("bal_udp_flows_total", "counter")
		add("bal_udp_datagrams_total", "counter")
		add("bal_udp_dropped_total", "counter")
		return strings.Join(b, "")
	}
	tests := []struct {
		name, text string
		ok         bool
	}{
		{"complete", full(""), true},
		{"family missing", full("bal_protection_mode"), false},
		{"route family missing", full("bal_route_matches_total"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, err := Parse(tt.text)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckServices(x, services); (err == nil) != tt.ok {
				t.Fatalf("CheckServices = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	bad := []struct{ name, from, to string }{
		{"wrong type", "# TYPE bal_protection_mode gauge", "# TYPE bal_protection_mode counter"},
		{"reason missing", `bal_backend_connect_failures_total{service="web",pool="default",backend="a:1",reason="other"} 0` + "\n", ""},
		{"unknown reason", `backend="a:1",reason="timeout"}`, `backend="a:1",reason="slow"}`},
		{"unknown backend", `{service="db",pool="default",backend="b:5432"} 0` + "\n# HELP bal_backend_connections_active", `{service="db",pool="default",backend="b:5433"} 0` + "\n# HELP bal_backend_connections_active"},
		{"backend in the wrong pool", `bal_backend_up{service="web",pool="api",backend="a:1"}`, `bal_backend_up{service="web",pool="api",backend="[::1]:2"}`},
		{"service missing", `bal_connections_total{service="db"} 0` + "\n", ""},
		{"unknown service", `bal_connections_total{service="db"}`, `bal_connections_total{service="dbx"}`},
		{"rejection reason missing", `bal_connections_rejected_total{service="db",reason="no_route"} 0` + "\n", ""},
		{"wrong label name", `{service="web",direction="client_to_backend"}`, `{service="web",dir="client_to_backend"}`},
		{"label missing", `bal_protection_mode{service="web"} 0`, `bal_protection_mode 0`},
		{"extra series", `bal_protection_mode{service="web"} 0` + "\n", `bal_protection_mode{service="web"} 0` + "\n" + `bal_protection_mode{service="web",x="1"} 0` + "\n"},
		{"route of no service", `{service="web",route="api"}`, `{service="web",route="default"}`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			text := full("")
			if !strings.Contains(text, tt.from) {
				t.Fatalf("test broken: %q not in the exposition", tt.from)
			}
			x, err := Parse(strings.Replace(text, tt.from, tt.to, 1))
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckServices(x, services); !errors.Is(err, ErrFormat) {
				t.Fatalf("CheckServices accepted it: %v", err)
			}
		})
	}
}

func TestSum(t *testing.T) {
	x, err := Parse(head + "m{s=\"a\",r=\"1\"} 1\nm{s=\"a\",r=\"2\"} 2\nm{s=\"b\",r=\"1\"} 4\n")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		labels []string
		want   float64
		ok     bool
	}{
		{nil, 7, true},
		{[]string{"s", "a"}, 3, true},
		{[]string{"r", "1"}, 5, true},
		{[]string{"s", "b", "r", "1"}, 4, true},
		{[]string{"s", "c"}, 0, false},
		{[]string{"s"}, 0, false},
	} {
		if got, ok := x.Sum("m", tt.labels...); got != tt.want || ok != tt.ok {
			t.Errorf("Sum(m, %v) = %v, %v; want %v, %v", tt.labels, got, ok, tt.want, tt.ok)
		}
	}
	if _, ok := x.Sum("absent"); ok {
		t.Error("Sum of an absent family is ok")
	}
}
