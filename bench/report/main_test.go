package main

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = `rep,workload,target,metric,value
1,ka64,direct,rps,100
1,ka64,bal-gnet,rps,99
1,ka64,haproxy,rps,90
2,ka64,direct,rps,50
2,ka64,bal-gnet,rps,49
2,ka64,haproxy,rps,45
3,ka64,direct,rps,80
3,ka64,bal-gnet,rps,NA
3,ka64,haproxy,rps,88
1,ka64,bal-gnet,foreign_pct,3.5
1,idle,bal-gnet,b_per_conn,900
1,idle,haproxy,b_per_conn,3000
1,close,bal-gnet,rps,10
1,close,bal-std,rps,8
1,close,direct,rps,11
1,custom,nginx,widgets,7
`

func mustParse(t *testing.T, s string) *data {
	t.Helper()
	d, err := parse(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in string
		header   bool
	}{
		{"empty", "", true},
		{"wrong header", "a,b,c,d,e\n", true},
		{"bad rep", "rep,workload,target,metric,value\nx,ka64,direct,rps,1\n", false},
		{"bad value", "rep,workload,target,metric,value\n1,ka64,direct,rps,fast\n", false},
		{"infinite value", "rep,workload,target,metric,value\n1,ka64,direct,rps,Inf\n", false},
		{"short row", "rep,workload,target,metric,value\n1,ka64,direct,rps\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(strings.NewReader(tt.in))
			if err == nil {
				t.Fatal("parse succeeded")
			}
			if tt.header != errors.Is(err, errHeader) {
				t.Fatalf("error %v: header error %v, want %v", err, errors.Is(err, errHeader), tt.header)
			}
		})
	}
}

func TestOrderAndRatios(t *testing.T) {
	d := mustParse(t, sample)
	if got := strings.Join(d.targets, ","); got != "direct,bal-gnet,bal-std,haproxy,nginx" {
		t.Fatalf("targets %s", got)
	}
	last := d.metrics[len(d.metrics)-1]
	if last.workload != "custom" || last.metric != "widgets" {
		t.Fatalf("an unknown metric is not last: %+v", last)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	tests := []struct {
		name                     string
		workload, metric, t, ref string
		want                     float64
		n                        int
	}{
		// Per repetition 0.99 and 0.98 (rep 3 is NA): the median of two.
		{"against direct", "ka64", "rps", "bal-gnet", direct, 0.985, 2},
		{"against haproxy", "ka64", "rps", "bal-gnet", haproxy, (1.1 + 49.0/45) / 2, 2},
		{"reference missing", "idle", "b_per_conn", "bal-gnet", direct, math.NaN(), 0},
		{"against bal-std", "close", "rps", "bal-gnet", "bal-std", 1.25, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, n := d.ratio(tt.workload, tt.metric, tt.t, tt.ref)
			if n != tt.n || !(near(got, tt.want) || math.IsNaN(got) && math.IsNaN(tt.want)) {
				t.Fatalf("ratio = %v over %d, want %v over %d", got, n, tt.want, tt.n)
			}
		})
	}
	if m, n := d.median(key{"ka64", direct, "rps"}); m != 80 || n != 3 {
		t.Fatalf("median direct = %v over %d, want 80 over 3", m, n)
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{7}, 7},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) is not NaN")
	}
}

func TestFmtNum(t *testing.T) {
	tests := []struct {
		v    float64
		prec int
		want string
	}{
		{36889.4, 0, "36,889"},
		{1234567.891, 2, "1,234,567.89"},
		{999, 0, "999"},
		{0.3456, 3, "0.346"},
		{-1234.5, 1, "-1,234.5"},
		{-0.0001, 1, "0.0"},
		{math.NaN(), 2, "–"},
	}
	for _, tt := range tests {
		if got := fmtNum(tt.v, tt.prec); got != tt.want {
			t.Errorf("fmtNum(%v, %d) = %q, want %q", tt.v, tt.prec, got, tt.want)
		}
	}
}

func TestGoalMet(t *testing.T) {
	tests := []struct {
		g    goal
		v    float64
		want string
	}{
		{goal{limit: 0.98}, 0.99, "met"},
		{goal{limit: 0.98}, 0.98, "met"},
		{goal{limit: 0.98}, 0.97, "**missed**"},
		{goal{limit: 1024, atMost: true}, 1000, "met"},
		{goal{limit: 1024, atMost: true}, 1025, "**missed**"},
		{goal{limit: 1}, math.NaN(), "not measured"},
	}
	for _, tt := range tests {
		if got := tt.g.met(tt.v); got != tt.want {
			t.Errorf("%+v met(%v) = %q, want %q", tt.g, tt.v, got, tt.want)
		}
	}
}

func TestOutputs(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "raw.csv")
	if err := os.WriteFile(in, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	csvOut, md, gp := filepath.Join(dir, "r.csv"), filepath.Join(dir, "r.md"), filepath.Join(dir, "r.gp")
	if err := run(in, csvOut, md, gp, "it's.svg", "title"); err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tests := []struct {
		name, file string
		want       []string
	}{
		{"csv ratios", csvOut, []string{
			"rep,workload,target,metric,value,x_direct,x_haproxy\n",
			"1,ka64,bal-gnet,rps,99,0.9900,1.1000\n",
			"3,ka64,bal-gnet,rps,NA,,\n",
			"1,ka64,bal-gnet,foreign_pct,3.5,,\n",
		}},
		{"markdown", md, []string{
			"| ka64 | requests/s | 80 | 74 | – | 88 | – |",
			"| group | goal | bal-gnet | met | bal-std | best peer |",
			"| overhead | keep-alive 64: requests/s ≥ 0.98× direct | 0.98× | met | – | 0.90× haproxy |",
			"| overhead | idle: RSS ≤ 1 KiB per proxied connection | 900 | met | – | 3,000 haproxy |",
			"| engine | churn (new connection per request) ≥ 1.1× bal-std | 1.25× | met | – | – |",
			"| ka64 | 1 | 3.5 | 3.5 |",
		}},
		{"gnuplot", gp, []string{
			"set output 'it''s.svg'",
			"\"keep-alive 64\" 0.9850",
			"plot $p0 using 2:xtic(1) title 'bal-gnet'",
			"set multiplot layout 2,1",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := read(tt.file)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in\n%s", w, got)
				}
			}
		})
	}
}

func TestGnuplotWithoutReferences(t *testing.T) {
	d := mustParse(t, "rep,workload,target,metric,value\n1,ka64,bal-gnet,rps,5\n")
	var b strings.Builder
	if err := d.writeGnuplot(&b, "x.svg", "t"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "plot $") {
		t.Fatalf("plotted without a reference target:\n%s", b.String())
	}
}

// TestNginxReference: the dns workload, which HAProxy does not run, gets
// ratios against nginx and its goals; workloads HAProxy ran do not.
func TestNginxReference(t *testing.T) {
	d := mustParse(t, `rep,workload,target,metric,value
1,ka64,haproxy,rps,90
1,ka64,nginx,rps,80
1,ka64,bal-gnet,rps,99
1,dns,direct,qps,300000
1,dns,nginx,qps,100000
1,dns,bal-gnet,qps,150000
1,dns,bal-std,qps,120000
1,dns,nginx,p99_ms,2
1,dns,bal-gnet,p99_ms,1
1,dns,bal-std,p99_ms,1.5
`)
	var b strings.Builder
	if err := d.writeMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	_, nginxPart, ok := strings.Cut(md, "**× nginx**")
	if !ok {
		t.Fatalf("no × nginx table:\n%s", md)
	}
	nginxPart, _, _ = strings.Cut(nginxPart, "**Goals**")
	for _, want := range []string{"| dns | queries/s (UDP) | 3.00 | 1.50 | 1.20 |", "| dns | p99 latency ms | – | 0.50 | 0.75 |"} {
		if !strings.Contains(nginxPart, want) {
			t.Errorf("× nginx table lacks %q:\n%s", want, nginxPart)
		}
	}
	if strings.Contains(nginxPart, "| ka64 |") {
		t.Errorf("× nginx table has a workload HAProxy ran:\n%s", nginxPart)
	}
	for _, want := range []string{"| engine | dns: queries/s ≥ 1.2× nginx | 1.50× | met | 1.20× |", "| engine | dns: p99 < nginx's | 0.50× | met | 0.75× |"} {
		if !strings.Contains(md, want) {
			t.Errorf("goals lack %q:\n%s", want, md)
		}
	}
}
