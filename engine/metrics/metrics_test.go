package metrics

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/metrics/metricstest"
	"github.com/bal-lb/bal/engine/policy"
	"github.com/bal-lb/bal/engine/pool"
	"github.com/bal-lb/bal/engine/server"
)

var update = flag.Bool("update", false, "rewrite testdata/*.prom")

var started = time.Date(2025, 3, 4, 5, 6, 7, 250_000_000, time.UTC)

// statuses are constructed states covering every value the exposition
// reads; the golden files hold their expected output.
var statuses = []struct {
	name     string
	version  string
	st       server.Status
	services []metricstest.Service
}{
	{name: "empty", st: server.Status{}},
	{
		name:    "running",
		version: "v1.2.3",
		st: withFirst(server.Status{
			Engine: "gnet", Started: started,
			Reloads: 3, ReloadFailures: 1,
			LastReload: &server.ReloadResult{OK: true, Time: started.Add(time.Hour)},
			Services: []server.ServiceStatus{
				{
					Name: "default", Protocol: config.TCP, BindAddress: "0.0.0.0", Port: 9295,
					Stats: engine.Stats{BytesIn: 123456789, BytesOut: 987654321012},
					Policy: policy.Status{
						Service: "default", Method: config.SourceHash, Active: 5, Total: 1000, Rejected: 7, NoBackend: 2,
						RejectedBy:   map[engine.RejectReason]uint64{engine.RejectLimit: 6, engine.RejectProxyHeader: 1},
						HealthRounds: 40, LocalFailures: 1, AccessLogDropped: 9,
						Pools: []policy.PoolStatus{{Name: config.DefaultServiceName, Backends: []policy.BackendStatus{
							{Address: "10.0.0.1:8080", Reachable: true, Weight: 3, Active: 4, Total: 700, Counters: pool.Counters{Timeout: 1}},
							{Address: "[::1]:9000", Reachable: false, Weight: 1, Active: 0, Total: 250, Counters: pool.Counters{Timeout: 2, Refused: 30, Other: 4}},
							{Address: "app-a.internal:9100", Reachable: true, Weight: 256, Active: 1, Total: 50},
						}}},
					},
				},
				{
					Name: "web", Protocol: config.TCP, BindAddress: "::", Port: 443,
					Stats: engine.Stats{BytesIn: 10, BytesOut: 20},
					Policy: policy.Status{
						Service: "web", Method: config.RoundRobin, Total: 12,
						RejectedBy: map[engine.RejectReason]uint64{engine.RejectNoRoute: 3, engine.RejectACL: 2},
						Inspected:  map[engine.InspectResult]uint64{engine.InspectSNI: 10, engine.InspectNotTLS: 2},
						Pools: []policy.PoolStatus{
							{Name: "api", Route: true, Matched: 8, Backends: []policy.BackendStatus{{Address: "10.0.0.5:443", Reachable: true, Weight: 1, Total: 8}}},
							{Name: "static", Route: true, Matched: 4, Backends: []policy.BackendStatus{{Address: "10.0.0.5:443", Reachable: true, Weight: 2, Total: 4}}},
						},
					},
				},
			},
		}),
		services: []metricstest.Service{
			{Name: "default", Pools: []metricstest.Pool{{Name: "default", Backends: []string{"10.0.0.1:8080", "[::1]:9000", "app-a.internal:9100"}}}},
			{Name: "web", Pools: []metricstest.Pool{{Name: "api", Route: true, Backends: []string{"10.0.0.5:443"}}, {Name: "static", Route: true, Backends: []string{"10.0.0.5:443"}}}},
		},
	},
	{
		name:    "protection",
		version: "v1.2.3",
		st: withFirst(server.Status{
			Engine: "std", Started: started, Draining: 1,
			ReloadFailures: 2,
			LastReload:     &server.ReloadResult{OK: false, Error: "reload rejected: port: bad"},
			Services: []server.ServiceStatus{{
				Name: "default", Protocol: config.TCP, BindAddress: "127.0.0.1", Port: 9295,
				Policy: policy.Status{
					Service:    "default",
					Method:     config.RoundRobin,
					Active:     -1, // a transient negative count never shows as a huge number
					Protection: policy.ProtectionStatus{Enabled: true, Reason: "all_backends_unavailable", Transitions: 3},
					Pools: []policy.PoolStatus{{Name: config.DefaultServiceName, Backends: []policy.BackendStatus{
						{Address: "127.0.0.1:9000", Weight: 1, Counters: pool.Counters{Refused: 12}},
					}}},
				},
			}},
		}),
		services: metricstest.Single([]string{"127.0.0.1:9000"}),
	},
	{
		name:    "udp",
		version: "v1.2.3",
		st: withFirst(server.Status{
			Engine: "std", Started: started,
			Services: []server.ServiceStatus{
				{
					Name: "dns", Protocol: config.UDP, BindAddress: "127.0.0.1", Port: 53,
					Stats: engine.Stats{Accepted: 40, Active: 3, BytesIn: 2400, BytesOut: 9600, DatagramsIn: 60, DatagramsOut: 58,
						Dropped: engine.DropCounts{engine.DropNoBackend: 1, engine.DropBackendBusy: 2, engine.DropDraining: 4}},
					Policy: policy.Status{
						Service: "dns", Protocol: config.UDP, Method: config.RoundRobin, Active: 3, Total: 40,
						RejectedBy: map[engine.RejectReason]uint64{engine.RejectLimit: 7, engine.RejectACL: 5},
						Pools: []policy.PoolStatus{{Name: config.DefaultServiceName, Backends: []policy.BackendStatus{
							{Address: "127.0.0.1:5301", Reachable: true, Weight: 1, Active: 2, Total: 21},
							{Address: "127.0.0.1:5302", Reachable: true, Weight: 1, Active: 1, Total: 19},
						}}},
					},
				},
				{
					Name: "web", Protocol: config.TCP, BindAddress: "127.0.0.1", Port: 53,
					Stats: engine.Stats{BytesIn: 1, BytesOut: 2},
					Policy: policy.Status{
						Service: "web", Protocol: config.TCP, Method: config.RoundRobin,
						Pools: []policy.PoolStatus{{Name: config.DefaultServiceName, Backends: []policy.BackendStatus{
							{Address: "127.0.0.1:8053", Reachable: true, Weight: 1},
						}}},
					},
				},
			},
		}),
		services: []metricstest.Service{
			{Name: "dns", UDP: true, Pools: []metricstest.Pool{{Name: "default", Backends: []string{"127.0.0.1:5301", "127.0.0.1:5302"}}}},
			{Name: "web", Pools: []metricstest.Pool{{Name: "default", Backends: []string{"127.0.0.1:8053"}}}},
		},
	},
}

// withFirst fills the top-level fields from the first service, as
// server.Status does.
func withFirst(st server.Status) server.Status {
	f := st.Services[0]
	st.BindAddress, st.Port, st.Method, st.Policy = f.BindAddress, f.Port, string(f.Policy.Method), f.Policy
	st.BytesIn, st.BytesOut = f.Stats.BytesIn, f.Stats.BytesOut
	return st
}

func TestGolden(t *testing.T) {
	for _, tt := range statuses {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			Writer(tt.version)(&buf, tt.st)
			path := filepath.Join("testdata", tt.name+".prom")
			if *update {
				if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != string(want) {
				t.Fatalf("output differs from %s (run with -update to accept):\n%s", path, got)
			}
			// Deterministic: a second rendering is identical.
			var again bytes.Buffer
			Writer(tt.version)(&again, tt.st)
			if !bytes.Equal(again.Bytes(), buf.Bytes()) {
				t.Fatal("two renderings of one status differ")
			}
		})
	}
}

// TestFormat: every rendering parses strictly, has every stable metric with
// every series, and nothing else is malformed.
func TestFormat(t *testing.T) {
	for _, tt := range statuses {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			Write(&buf, tt.st)
			x, err := metricstest.Parse(buf.String())
			if err != nil {
				t.Fatal(err)
			}
			if err := metricstest.CheckServices(x, tt.services); err != nil {
				t.Fatal(err)
			}
			for _, f := range x.Families {
				if !strings.HasPrefix(f.Name, "bal_") {
					t.Errorf("family %s lacks the bal_ prefix", f.Name)
				}
				if f.Type == "counter" != strings.HasSuffix(f.Name, "_total") {
					t.Errorf("family %s of type %s: counters and only counters end in _total", f.Name, f.Type)
				}
			}
		})
	}
}

// TestValues reads the constructed "running" and "protection" states back
// through the parser: each number lands in its own series.
func TestValues(t *testing.T) {
	render := func(i int) *metricstest.Exposition {
		var buf bytes.Buffer
		Writer(statuses[i].version)(&buf, statuses[i].st)
		x, err := metricstest.Parse(buf.String())
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	running, prot, udp := render(1), render(2), render(3)
	dns := []string{"service", "dns"}
	d, web := []string{"service", "default"}, []string{"service", "web"}
	// series is name{base..., more...}.
	series := func(name string, base []string, more ...string) []string {
		return append(append([]string{name}, base...), more...)
	}
	def := func(name, backend string, more ...string) []string {
		return series(name, []string{"service", "default", "pool", "default", "backend", backend}, more...)
	}
	tests := []struct {
		x      *metricstest.Exposition
		series []string
		want   float64
	}{
		{running, []string{"bal_info", "engine", "gnet", "method", "source_hash", "version", "v1.2.3"}, 1},
		{udp, series("bal_udp_flows_active", dns), 3},
		{udp, series("bal_udp_flows_total", dns), 40},
		{udp, series("bal_udp_datagrams_total", dns, "direction", "client_to_backend"), 60},
		{udp, series("bal_udp_datagrams_total", dns, "direction", "backend_to_client"), 58},
		{udp, series("bal_bytes_total", dns, "direction", "client_to_backend"), 2400},
		{udp, series("bal_udp_dropped_total", dns, "reason", "limit"), 7},
		{udp, series("bal_udp_dropped_total", dns, "reason", "acl"), 5},
		{udp, series("bal_udp_dropped_total", dns, "reason", "no_route"), 0},
		{udp, series("bal_udp_dropped_total", dns, "reason", "no_backend"), 1},
		{udp, series("bal_udp_dropped_total", dns, "reason", "backend_busy"), 2},
		{udp, series("bal_udp_dropped_total", dns, "reason", "draining"), 4},
		{udp, series("bal_udp_dropped_total", dns, "reason", "send_error"), 0},
		{running, []string{"bal_service_info", "service", "web", "protocol", "tcp", "address", "[::]:443", "method", "round_robin"}, 1},
		{running, []string{"bal_service_info", "service", "default", "protocol", "tcp", "address", "0.0.0.0:9295", "method", "source_hash"}, 1},
		{running, []string{"bal_start_time_seconds"}, 1741064767.25},
		{running, series("bal_connections_active", d), 5},
		{running, series("bal_connections_active", web), 0},
		{running, series("bal_connections_total", d), 1000},
		{running, series("bal_connections_total", web), 12},
		{running, series("bal_connections_rejected_total", d, "reason", "limit"), 6},
		{running, series("bal_connections_rejected_total", d, "reason", "proxy_header"), 1},
		{running, series("bal_connections_rejected_total", d, "reason", "no_route"), 0},
		{running, series("bal_connections_rejected_total", web, "reason", "no_route"), 3},
		{running, series("bal_connections_rejected_total", web, "reason", "acl"), 2},
		{running, series("bal_connections_no_backend_total", d), 2},
		{running, series("bal_bytes_total", d, "direction", "client_to_backend"), 123456789},
		{running, series("bal_bytes_total", d, "direction", "backend_to_client"), 987654321012},
		{running, series("bal_bytes_total", web, "direction", "backend_to_client"), 20},
		{running, series("bal_route_matches_total", web, "route", "api"), 8},
		{running, series("bal_route_matches_total", web, "route", "static"), 4},
		{running, series("bal_inspect_results_total", web, "result", "sni"), 10},
		{running, series("bal_inspect_results_total", web, "result", "not_tls"), 2},
		{running, series("bal_inspect_results_total", web, "result", "closed"), 0},
		{running, series("bal_inspect_results_total", d, "result", "sni"), 0},
		{running, def("bal_backend_up", "10.0.0.1:8080"), 1},
		{running, def("bal_backend_up", "[::1]:9000"), 0},
		{running, def("bal_backend_weight", "app-a.internal:9100"), 256},
		{running, []string{"bal_backend_weight", "service", "web", "pool", "static", "backend", "10.0.0.5:443"}, 2},
		{running, []string{"bal_backend_connections_total", "service", "web", "pool", "api", "backend", "10.0.0.5:443"}, 8},
		{running, def("bal_backend_connections_active", "10.0.0.1:8080"), 4},
		{running, def("bal_backend_connections_total", "[::1]:9000"), 250},
		{running, def("bal_backend_connect_failures_total", "10.0.0.1:8080", "reason", "timeout"), 1},
		{running, def("bal_backend_connect_failures_total", "[::1]:9000", "reason", "timeout"), 2},
		{running, def("bal_backend_connect_failures_total", "[::1]:9000", "reason", "refused"), 30},
		{running, def("bal_backend_connect_failures_total", "[::1]:9000", "reason", "other"), 4},
		{running, def("bal_backend_connect_failures_total", "app-a.internal:9100", "reason", "refused"), 0},
		{running, series("bal_local_connect_failures_total", d), 1},
		{running, series("bal_health_check_rounds_total", d), 40},
		{running, series("bal_protection_mode", d), 0},
		{running, series("bal_protection_mode_reason", d, "reason", "timeout_or_refused_storm"), 0},
		{running, []string{"bal_reloads_total", "result", "ok"}, 3},
		{running, []string{"bal_reloads_total", "result", "error"}, 1},
		{running, []string{"bal_last_reload_successful"}, 1},
		{running, series("bal_access_log_dropped_total", d), 9},
		{prot, []string{"bal_info", "engine", "std", "method", "round_robin", "version", "v1.2.3"}, 1},
		{prot, series("bal_connections_active", d), 0},
		{prot, series("bal_protection_mode", d), 1},
		{prot, series("bal_protection_mode_reason", d, "reason", "all_backends_unavailable"), 1},
		{prot, series("bal_protection_mode_reason", d, "reason", "timeout_or_refused_storm"), 0},
		{prot, series("bal_protection_transitions_total", d), 3},
		{prot, []string{"bal_reloads_total", "result", "error"}, 2},
		{prot, []string{"bal_last_reload_successful"}, 0},
		{prot, []string{"bal_listeners_draining"}, 1},
		{prot, def("bal_backend_up", "127.0.0.1:9000"), 0},
	}
	for _, tt := range tests {
		if got, ok := tt.x.Value(tt.series[0], tt.series[1:]...); !ok || got != tt.want {
			t.Errorf("%v = %v (present %v), want %v", tt.series, got, ok, tt.want)
		}
	}
	var buf bytes.Buffer
	Write(&buf, statuses[0].st)
	if !strings.Contains(buf.String(), `version="unknown"`) {
		t.Error("Write without a version does not say unknown")
	}
}

// TestLabelEscaping: label values the format must escape come back intact.
func TestLabelEscaping(t *testing.T) {
	names := []string{`a"b:1`, `back\slash:2`, "new\nline:3", "[2001:db8::1]:443", "ünï.example:80"}
	for _, name := range names {
		if got := roundTrip(t, name); got != name {
			t.Errorf("label %q came back as %q", name, got)
		}
	}
	if got := roundTrip(t, "bad\xffutf8:1"); got != "bad\uFFFDutf8:1" {
		t.Errorf("invalid UTF-8 came back as %q", got)
	}
}

func roundTrip(t *testing.T, backend string) string {
	t.Helper()
	var buf bytes.Buffer
	Write(&buf, server.Status{Services: []server.ServiceStatus{{Name: config.DefaultServiceName,
		Policy: policy.Status{Pools: []policy.PoolStatus{{Name: config.DefaultServiceName, Backends: []policy.BackendStatus{{Address: backend, Reachable: true}}}}}}}})
	x, err := metricstest.Parse(buf.String())
	if err != nil {
		t.Fatalf("backend %q: %v\n%s", backend, err, buf.String())
	}
	vals := x.LabelValues("bal_backend_up", "backend")
	if len(vals) != 1 {
		t.Fatalf("backend %q: label values %q", backend, vals)
	}
	return vals[0]
}

// FuzzBackendLabel: any backend name yields a strictly valid exposition in
// which the name reads back unchanged (valid UTF-8) or with U+FFFD.
func FuzzBackendLabel(f *testing.F) {
	f.Add("10.0.0.1:8080")
	f.Add("[::1]:9000")
	f.Add(`a"b\c` + "\n:1")
	f.Fuzz(func(t *testing.T, backend string) {
		if got, want := roundTrip(t, backend), strings.ToValidUTF8(backend, "\uFFFD"); got != want {
			t.Fatalf("label %q came back as %q", want, got)
		}
	})
}

func BenchmarkWrite(b *testing.B) {
	st := statuses[1].st
	buf := make([]byte, 0, 8192)
	b.ReportAllocs()
	for b.Loop() {
		buf = Append(buf[:0], st, "v1")
	}
}
