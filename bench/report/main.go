// Command report turns the raw rows of a bench run into results: medians,
// ratios against direct and against HAProxy from the same repetition, the
// goals (overhead against direct, the Linux engine's own targets), and a
// gnuplot script for the chart of ratios.
//
//	report -in raw.csv -csv results.csv -md tables.md -gp chart.gp -svg chart.svg
//
// raw.csv has the header rep,workload,target,metric,value (value "NA" for a
// run that failed). results.csv repeats every row with x_direct and
// x_haproxy, the ratio against that target's value in the same repetition
// (empty when there is none). tables.md is markdown; chart.gp, run with
// gnuplot, draws chart.svg.
package main

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

func main() {
	in := flag.String("in", "", "raw CSV (rep,workload,target,metric,value)")
	outCSV := flag.String("csv", "", "write rows with ratios here")
	outMD := flag.String("md", "", "write markdown tables here (default stdout)")
	outGP := flag.String("gp", "", "write a gnuplot script here")
	svg := flag.String("svg", "chart.svg", "SVG file the gnuplot script draws")
	title := flag.String("title", "bal bench", "chart title")
	flag.Parse()
	if *in == "" {
		fmt.Fprintln(os.Stderr, "report: -in is required")
		os.Exit(2)
	}
	if err := run(*in, *outCSV, *outMD, *outGP, *svg, *title); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(in, outCSV, outMD, outGP, svg, title string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	d, err := parse(f)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	write := func(path string, fn func(io.Writer) error) error {
		if path == "" {
			return nil
		}
		out, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := fn(out); err != nil {
			_ = out.Close()
			return err
		}
		return out.Close()
	}
	if err := write(outCSV, d.writeCSV); err != nil {
		return err
	}
	if err := write(outGP, func(w io.Writer) error { return d.writeGnuplot(w, svg, title) }); err != nil {
		return err
	}
	if outMD == "" {
		return d.writeMarkdown(os.Stdout)
	}
	return write(outMD, d.writeMarkdown)
}

// Reference targets for ratios. HAProxy has no UDP: for a workload it
// did not run (dns), the ratios are against nginx.
const (
	direct  = "direct"
	haproxy = "haproxy"
	nginx   = "nginx"
)

// knownTargets is the column order; targets not listed follow in the order
// they first appear.
var knownTargets = []string{direct, "bal-gnet", "bal-std", haproxy, "haproxy-splice", "nginx"}

// metricInfo describes one figure of one workload.
type metricInfo struct {
	workload, metric string
	label            string // row label
	prec             int    // decimals shown
	lowerBetter      bool
	noise            bool // a measurement of the machine, not of the target
	info             bool // shown as a value only, never as a ratio
}

// knownMetrics is the row order of the tables.
var knownMetrics = []metricInfo{
	{workload: "ka64", metric: "rps", label: "requests/s"},
	{workload: "ka64", metric: "p99_ms", label: "p99 latency ms", prec: 2, lowerBetter: true},
	{workload: "ka64", metric: "cpu_us_req", label: "proxy CPU µs/request", prec: 1, lowerBetter: true},
	{workload: "ka64", metric: "cpu_pct", label: "proxy CPU % of a core", lowerBetter: true},
	{workload: "ka256", metric: "rps", label: "requests/s"},
	{workload: "ka256", metric: "p99_ms", label: "p99 latency ms", prec: 2, lowerBetter: true},
	{workload: "ka256", metric: "cpu_us_req", label: "proxy CPU µs/request", prec: 1, lowerBetter: true},
	{workload: "ka256", metric: "cpu_pct", label: "proxy CPU % of a core", lowerBetter: true},
	{workload: "close", metric: "rps", label: "requests/s (new connection each)"},
	{workload: "close", metric: "p99_ms", label: "p99 latency ms", prec: 2, lowerBetter: true},
	{workload: "close", metric: "cpu_us_req", label: "proxy CPU µs/connection", prec: 1, lowerBetter: true},
	{workload: "close", metric: "cpu_pct", label: "proxy CPU % of a core", lowerBetter: true},
	{workload: "bulk", metric: "mbps", label: "MB/s"},
	{workload: "bulk", metric: "cpu_s_gb", label: "proxy CPU s/GB", prec: 3, lowerBetter: true},
	{workload: "bulk", metric: "cpu_pct", label: "proxy CPU % of a core", lowerBetter: true},
	{workload: "idle", metric: "b_per_conn", label: "RSS bytes per idle connection", lowerBetter: true},
	{workload: "idle", metric: "anon_per_conn", label: "… of which private (RssAnon)", lowerBetter: true},
	{workload: "idle", metric: "fds_per_conn", label: "fds per idle connection", prec: 2, lowerBetter: true},
	{workload: "idle", metric: "rss_mb", label: "RSS MB with the connections open", prec: 1, lowerBetter: true},
	{workload: "idle", metric: "held", label: "connections held", info: true},
	{workload: "startup", metric: "ms", label: "ms from spawn to first response", prec: 1, lowerBetter: true},
	{workload: "dns", metric: "qps", label: "queries/s (UDP)"},
	{workload: "dns", metric: "p99_ms", label: "p99 latency ms", prec: 2, lowerBetter: true},
	{workload: "dns", metric: "cpu_us_req", label: "proxy CPU µs/query", prec: 1, lowerBetter: true},
	{workload: "dns", metric: "cpu_pct", label: "proxy CPU % of a core", lowerBetter: true},
	{workload: "dns", metric: "lost_pct", label: "queries lost %", prec: 3, lowerBetter: true, info: true},
}

// foreign is the per-run noise metric: CPU used by processes other than the
// load generator, the backend and the proxy, in % of the whole machine.
const foreign = "foreign_pct"

type key struct{ workload, target, metric string }

type row struct {
	rep int
	key
	value float64
	ok    bool
}

type data struct {
	rows    []row
	reps    []int
	targets []string
	metrics []metricInfo
	byKey   map[key]map[int]float64 // → rep → value
}

var errHeader = errors.New("header must be rep,workload,target,metric,value")

func parse(r io.Reader) (*data, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 5
	recs, err := cr.ReadAll()
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 || strings.Join(recs[0], ",") != "rep,workload,target,metric,value" {
		return nil, errHeader
	}
	d := &data{byKey: map[key]map[int]float64{}}
	seenT := map[string]bool{}
	seenM := map[[2]string]bool{}
	seenR := map[int]bool{}
	for i, rec := range recs[1:] {
		rep, err := strconv.Atoi(rec[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: rep %q: %w", i+2, rec[0], err)
		}
		rw := row{rep: rep, key: key{rec[1], rec[2], rec[3]}}
		if rec[4] != "NA" {
			v, err := strconv.ParseFloat(rec[4], 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("line %d: value %q is not a number", i+2, rec[4])
			}
			rw.value, rw.ok = v, true
			if d.byKey[rw.key] == nil {
				d.byKey[rw.key] = map[int]float64{}
			}
			d.byKey[rw.key][rep] = v
		}
		d.rows = append(d.rows, rw)
		if !seenR[rep] {
			seenR[rep] = true
			d.reps = append(d.reps, rep)
		}
		if !seenT[rw.target] {
			seenT[rw.target] = true
		}
		if mk := [2]string{rw.workload, rw.metric}; !seenM[mk] {
			seenM[mk] = true
		}
	}
	slices.Sort(d.reps)
	for _, t := range knownTargets {
		if seenT[t] {
			d.targets = append(d.targets, t)
			delete(seenT, t)
		}
	}
	for _, rw := range d.rows { // unknown targets, in order of appearance
		if seenT[rw.target] {
			d.targets = append(d.targets, rw.target)
			delete(seenT, rw.target)
		}
	}
	for _, m := range knownMetrics {
		if mk := [2]string{m.workload, m.metric}; seenM[mk] {
			d.metrics = append(d.metrics, m)
			delete(seenM, mk)
		}
	}
	for _, rw := range d.rows {
		if mk := [2]string{rw.workload, rw.metric}; seenM[mk] {
			delete(seenM, mk)
			d.metrics = append(d.metrics, metricInfo{workload: rw.workload, metric: rw.metric,
				label: rw.metric, prec: 2, noise: rw.metric == foreign, lowerBetter: true})
		}
	}
	return d, nil
}

// value returns one run's value.
func (d *data) value(k key, rep int) (float64, bool) {
	v, ok := d.byKey[k][rep]
	return v, ok
}

// median of a target's values over the repetitions.
func (d *data) median(k key) (float64, int) {
	var vs []float64
	for _, v := range d.byKey[k] {
		vs = append(vs, v)
	}
	return median(vs), len(vs)
}

// ratio is the median over repetitions of target/ref, each pair taken from
// the same repetition.
func (d *data) ratio(workload, metric, target, ref string) (float64, int) {
	var rs []float64
	for _, rep := range d.reps {
		v, ok1 := d.value(key{workload, target, metric}, rep)
		r, ok2 := d.value(key{workload, ref, metric}, rep)
		if ok1 && ok2 && r != 0 {
			rs = append(rs, v/r)
		}
	}
	return median(rs), len(rs)
}

// median of vs; NaN when empty.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	k := len(s)
	if k%2 == 1 {
		return s[k/2]
	}
	return (s[k/2-1] + s[k/2]) / 2
}

func (d *data) writeCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"rep", "workload", "target", "metric", "value", "x_direct", "x_haproxy"}); err != nil {
		return err
	}
	ratio := func(rw row, ref string) string {
		r, ok := d.value(key{rw.workload, ref, rw.metric}, rw.rep)
		if !rw.ok || !ok || r == 0 || rw.metric == foreign {
			return ""
		}
		return strconv.FormatFloat(rw.value/r, 'f', 4, 64)
	}
	for _, rw := range d.rows {
		v := "NA"
		if rw.ok {
			v = strconv.FormatFloat(rw.value, 'f', -1, 64)
		}
		if err := cw.Write([]string{strconv.Itoa(rw.rep), rw.workload, rw.target, rw.metric, v,
			ratio(rw, direct), ratio(rw, haproxy)}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// fmtNum formats v with prec decimals and thousands separators; "–" for NaN.
func fmtNum(v float64, prec int) string {
	if math.IsNaN(v) {
		return "–"
	}
	s := strconv.FormatFloat(math.Abs(v), 'f', prec, 64)
	intPart, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	if v < 0 && strings.Trim(s, "0.") != "" {
		b.WriteByte('-')
	}
	for i, c := range intPart {
		if i > 0 && (len(intPart)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if frac != "" {
		b.WriteString("." + frac)
	}
	return b.String()
}

func fmtRatio(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func (d *data) has(target string) bool { return slices.Contains(d.targets, target) }

func (d *data) writeMarkdown(w io.Writer) error {
	var b strings.Builder
	others := func(exclude string) []string {
		var ts []string
		for _, t := range d.targets {
			if t != exclude {
				ts = append(ts, t)
			}
		}
		return ts
	}
	header := func(first string, cols []string) {
		b.WriteString("| workload | " + first + " | " + strings.Join(cols, " | ") + " |\n|---|---|")
		b.WriteString(strings.Repeat("---:|", len(cols)) + "\n")
	}

	fmt.Fprintf(&b, "Medians of %d repetition(s); a dash is a figure the target does not have (direct has no proxy).\n\n", len(d.reps))
	header("figure", d.targets)
	for _, m := range d.metrics {
		if m.noise {
			continue
		}
		fmt.Fprintf(&b, "| %s | %s |", m.workload, m.label)
		for _, t := range d.targets {
			v, _ := d.median(key{m.workload, t, m.metric})
			b.WriteString(" " + fmtNum(v, m.prec) + " |")
		}
		b.WriteString("\n")
	}

	for _, ref := range []string{direct, haproxy, nginx} {
		if !d.has(ref) {
			continue
		}
		// nginx is the reference only where HAProxy has no figures.
		rows := func(m metricInfo) bool {
			if _, n := d.median(key{m.workload, ref, m.metric}); n == 0 {
				return false
			}
			_, byHAProxy := d.median(key{m.workload, haproxy, m.metric})
			return ref != nginx || byHAProxy == 0
		}
		if !slices.ContainsFunc(d.metrics, func(m metricInfo) bool { return !m.noise && !m.info && rows(m) }) {
			continue
		}
		cols := others(ref)
		fmt.Fprintf(&b, "\n**× %s** (median over repetitions of target ÷ %s in the same repetition; ", ref, ref)
		if ref == nginx {
			b.WriteString("for the workloads HAProxy does not run; ")
		}
		b.WriteString("above 1 is better for requests/s, queries/s and MB/s, below 1 for everything else)\n\n")
		header("figure", cols)
		for _, m := range d.metrics {
			if m.noise || m.info || !rows(m) {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s |", m.workload, m.label)
			for _, t := range cols {
				r, _ := d.ratio(m.workload, m.metric, t, ref)
				b.WriteString(" " + fmtRatio(r) + " |")
			}
			b.WriteString("\n")
		}
	}

	d.writeGoals(&b)
	d.writeNoise(&b)
	_, err := io.WriteString(w, b.String())
	return err
}

// goal is one target for bal's Linux engine: relay overhead against
// direct, or what the Linux engine must do better than the portable one.
type goal struct {
	group            string // "overhead" (against direct) or "engine" (the Linux engine's own)
	text             string
	workload, metric string
	ref              string // "" = the absolute value
	limit            float64
	atMost           bool // met when value <= limit (else >= limit)
}

var goals = []goal{
	{"overhead", "keep-alive 64: requests/s ≥ 0.98× direct", "ka64", "rps", direct, 0.98, false},
	{"overhead", "keep-alive 256: requests/s ≥ 0.95× direct", "ka256", "rps", direct, 0.95, false},
	{"overhead", "new connection per request: requests/s ≥ 0.95× direct", "close", "rps", direct, 0.95, false},
	{"overhead", "bulk 10 MiB: MB/s ≥ 0.95× direct", "bulk", "mbps", direct, 0.95, false},
	{"overhead", "bulk 10 MiB: proxy CPU ≤ 45 % of a core", "bulk", "cpu_pct", "", 45, true},
	{"overhead", "idle: RSS ≤ 1 KiB per proxied connection", "idle", "b_per_conn", "", 1024, true},
	{"overhead", "keep-alive 64: p99 ≤ 1.15× direct", "ka64", "p99_ms", direct, 1.15, true},
	{"overhead", "keep-alive 256: p99 ≤ 1.15× direct", "ka256", "p99_ms", direct, 1.15, true},
	{"engine", "churn (new connection per request) ≥ 1.1× bal-std", "close", "rps", "bal-std", 1.1, false},
	{"engine", "bulk CPU/GB ≤ 0.5× a userspace copy (HAProxy without splice)", "bulk", "cpu_s_gb", haproxy, 0.5, true},
	{"engine", "idle pair: RSS ≤ 2 KiB", "idle", "b_per_conn", "", 2048, true},
	{"engine", "idle pair: ≤ 2 fds", "idle", "fds_per_conn", "", 2.05, true},
	{"engine", "dns: queries/s ≥ 1.2× nginx", "dns", "qps", nginx, 1.2, false},
	{"engine", "dns: p99 < nginx's", "dns", "p99_ms", nginx, 0.9999, true},
}

// figure is a target's value for a goal: a median ratio or a median value.
func (d *data) figure(g goal, target string) float64 {
	if g.ref == "" {
		v, _ := d.median(key{g.workload, target, g.metric})
		return v
	}
	if target == g.ref {
		return math.NaN()
	}
	r, _ := d.ratio(g.workload, g.metric, target, g.ref)
	return r
}

func (g goal) met(v float64) string {
	switch {
	case math.IsNaN(v):
		return "not measured"
	case g.atMost && v <= g.limit, !g.atMost && v >= g.limit:
		return "met"
	}
	return "**missed**"
}

func (g goal) format(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case g.ref != "":
		return fmtRatio(v) + "×"
	case g.metric == "fds_per_conn":
		return fmtNum(v, 2)
	}
	return fmtNum(v, 0)
}

func (d *data) writeGoals(b *strings.Builder) {
	const gnet, std = "bal-gnet", "bal-std"
	if !d.has(gnet) {
		return
	}
	var peers []string
	for _, t := range d.targets {
		if t != direct && t != gnet && t != std {
			peers = append(peers, t)
		}
	}
	b.WriteString("\n**Goals** (overhead: bal against direct; engine: the Linux engine's own targets). ")
	b.WriteString("\"Best peer\" is the best of the other proxies in this run.\n\n")
	b.WriteString("| group | goal | bal-gnet | met | bal-std | best peer |\n|---|---|---:|---|---:|---|\n")
	for _, g := range goals {
		if _, n := d.median(key{g.workload, gnet, g.metric}); n == 0 {
			continue
		}
		v := d.figure(g, gnet)
		stdCell := "–"
		if d.has(std) && g.ref != std {
			stdCell = g.format(d.figure(g, std))
		}
		best, bestT := math.NaN(), ""
		for _, p := range peers {
			pv := d.figure(g, p)
			if math.IsNaN(pv) {
				continue
			}
			if math.IsNaN(best) || (g.atMost && pv < best) || (!g.atMost && pv > best) {
				best, bestT = pv, p
			}
		}
		peerCell := "–"
		if bestT != "" {
			peerCell = g.format(best) + " " + bestT
		}
		fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", g.group, g.text, g.format(v), g.met(v), stdCell, peerCell)
	}
}

// writeNoise summarises the foreign CPU seen during the runs.
func (d *data) writeNoise(b *strings.Builder) {
	type agg struct{ vs []float64 }
	per := map[string]*agg{}
	var order []string
	for _, rw := range d.rows {
		if rw.metric != foreign || !rw.ok {
			continue
		}
		if per[rw.workload] == nil {
			per[rw.workload] = &agg{}
			order = append(order, rw.workload)
		}
		per[rw.workload].vs = append(per[rw.workload].vs, rw.value)
	}
	if len(order) == 0 {
		return
	}
	b.WriteString("\n**Noise**: CPU used by other processes on the machine during each run, in % of both cores ")
	b.WriteString("(busy time in /proc/stat minus the load generator, the backend and the proxy).\n\n")
	b.WriteString("| workload | runs | median | max |\n|---|---:|---:|---:|\n")
	for _, w := range order {
		vs := per[w].vs
		fmt.Fprintf(b, "| %s | %d | %s | %s |\n", w, len(vs), fmtNum(median(vs), 1), fmtNum(slices.Max(vs), 1))
	}
}

// chartPanel is one plot of the chart: clusters of bars, one per target.
type chartPanel struct {
	title string
	ref   string
	rows  []chartRow
}

type chartRow struct{ label, workload, metric string }

// cols are the targets drawn as bars: all but the reference and direct.
func (p chartPanel) cols(targets []string) []string {
	var cols []string
	for _, t := range targets {
		if t != p.ref && t != direct {
			cols = append(cols, t)
		}
	}
	return cols
}

var chartPanels = []chartPanel{
	{"Throughput × direct (higher is better)", direct, []chartRow{
		{"keep-alive 64", "ka64", "rps"},
		{"keep-alive 256", "ka256", "rps"},
		{"new conn/request", "close", "rps"},
		{"bulk 10 MiB", "bulk", "mbps"},
	}},
	{"Cost × HAProxy (lower is better)", haproxy, []chartRow{
		{"p99 ka64", "ka64", "p99_ms"},
		{"p99 ka256", "ka256", "p99_ms"},
		{"CPU/req ka64", "ka64", "cpu_us_req"},
		{"CPU/conn close", "close", "cpu_us_req"},
		{"CPU/GB bulk", "bulk", "cpu_s_gb"},
		{"RSS/idle conn", "idle", "b_per_conn"},
		{"start-up", "startup", "ms"},
	}},
}

func (d *data) writeGnuplot(w io.Writer, svg, title string) error {
	var b strings.Builder
	var panels []chartPanel
	for _, p := range chartPanels {
		if !d.has(p.ref) {
			continue
		}
		var rows []chartRow
		for _, r := range p.rows {
			if _, n := d.median(key{r.workload, p.ref, r.metric}); n > 0 {
				rows = append(rows, r)
			}
		}
		if len(rows) > 0 && len(p.cols(d.targets)) > 0 {
			p.rows = rows
			panels = append(panels, p)
		}
	}
	fmt.Fprintf(&b, "set terminal svg size 1000,%d dynamic font 'sans,12' background rgb 'white'\n", 120+330*max(len(panels), 1))
	fmt.Fprintf(&b, "set output %s\n", gpString(svg))
	b.WriteString("set datafile missing 'NaN'\nset style data histograms\nset style histogram clustered gap 1\n")
	b.WriteString("set style fill solid 0.85 border -1\nset boxwidth 0.9\nset grid ytics\nset key outside bottom center horizontal noenhanced\n")
	b.WriteString("set xtics nomirror noenhanced\nset yrange [0:*]\nset ytics format '%.1f'\n")
	fmt.Fprintf(&b, "set multiplot layout %d,1 title %s noenhanced\n", max(len(panels), 1), gpString(title))
	for i, p := range panels {
		cols := p.cols(d.targets)
		fmt.Fprintf(&b, "$p%d << EOD\n", i)
		for _, r := range p.rows {
			b.WriteString(strconv.Quote(r.label)) // data strings take double quotes
			for _, t := range cols {
				v, _ := d.ratio(r.workload, r.metric, t, p.ref)
				b.WriteString(" " + strconv.FormatFloat(v, 'f', 4, 64))
			}
			b.WriteString("\n")
		}
		b.WriteString("EOD\n")
		fmt.Fprintf(&b, "set title %s noenhanced\n", gpString(p.title))
		fmt.Fprintf(&b, "plot $p%d", i)
		for j, t := range cols {
			if j == 0 {
				b.WriteString(" using 2:xtic(1)")
			} else {
				fmt.Fprintf(&b, ", '' using %d", j+2)
			}
			fmt.Fprintf(&b, " title %s linecolor rgb %s", gpString(t), gpString(color(t)))
		}
		b.WriteString(", 1 with lines dashtype 2 linecolor rgb 'black' title " + gpString("= "+p.ref) + "\n")
	}
	b.WriteString("unset multiplot\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// color is a target's bar colour, the same in every panel.
func color(target string) string {
	switch target {
	case "bal-gnet":
		return "#5e3c99"
	case "bal-std":
		return "#b2abd2"
	case haproxy:
		return "#e66101"
	case "haproxy-splice":
		return "#fdb863"
	case "nginx":
		return "#1b7837"
	}
	return "#888888"
}

// gpString quotes s for gnuplot (single quotes, doubled inside).
func gpString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
