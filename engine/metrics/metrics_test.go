package metrics

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	backends []string
}{
	{name: "empty", st: server.Status{}},
	{
		name:    "running",
		version: "v1.2.3",
		st: server.Status{
			Engine: "gnet", Method: "source_hash", Started: started,
			BytesIn: 123456789, BytesOut: 987654321012,
			Reloads: 3, ReloadFailures: 1,
			LastReload: &server.ReloadResult{OK: true, Time: started.Add(time.Hour)},
			Policy: policy.Status{
				Method: config.SourceHash, Active: 5, Total: 1000, Rejected: 7, NoBackend: 2,
				HealthRounds: 40, LocalFailures: 1, AccessLogDropped: 9,
				Pools: []policy.PoolStatus{{Name: config.DefaultServiceName, Backends: []policy.BackendStatus{
					{Address: "10.0.0.1:8080", Reachable: true, Weight: 3, Active: 4, Total: 700, Counters: pool.Counters{Timeout: 1}},
					{Address: "[::1]:9000", Reachable: false, Weight: 1, Active: 0, Total: 250, Counters: pool.Counters{Timeout: 2, Refused: 30, Other: 4}},
					{Address: "app-a.internal:9100", Reachable: true, Weight: 256, Active: 1, Total: 50},
				}}},
			},
		},
		backends: []string{"10.0.0.1:8080", "[::1]:9000", "app-a.internal:9100"},
	},
	{
		name:    "protection",
		version: "v1.2.3",
		st: server.Status{
			Engine: "std", Method: "round_robin", Started: started, Draining: 1,
			ReloadFailures: 2,
			LastReload:     &server.ReloadResult{OK: false, Error: "reload rejected: port: bad"},
			Policy: policy.Status{
				Active:     -1, // a transient negative count never shows as a huge number
				Protection: policy.ProtectionStatus{Enabled: true, Reason: "all_backends_unavailable", Transitions: 3},
				Pools: []policy.PoolStatus{{Name: config.DefaultServiceName, Backends: []policy.BackendStatus{
					{Address: "127.0.0.1:9000", Weight: 1, Counters: pool.Counters{Refused: 12}},
				}}},
			},
		},
		backends: []string{"127.0.0.1:9000"},
	},
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
			if err := metricstest.CheckStable(x, tt.backends); err != nil {
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
	running, prot := render(1), render(2)
	tests := []struct {
		x      *metricstest.Exposition
		series []string
		want   float64
	}{
		{running, []string{"bal_info", "engine", "gnet", "method", "source_hash", "version", "v1.2.3"}, 1},
		{running, []string{"bal_start_time_seconds"}, 1741064767.25},
		{running, []string{"bal_connections_active"}, 5},
		{running, []string{"bal_connections_total"}, 1000},
		{running, []string{"bal_connections_rejected_total"}, 7},
		{running, []string{"bal_connections_no_backend_total"}, 2},
		{running, []string{"bal_bytes_total", "direction", "client_to_backend"}, 123456789},
		{running, []string{"bal_bytes_total", "direction", "backend_to_client"}, 987654321012},
		{running, []string{"bal_backend_up", "backend", "10.0.0.1:8080"}, 1},
		{running, []string{"bal_backend_up", "backend", "[::1]:9000"}, 0},
		{running, []string{"bal_backend_weight", "backend", "app-a.internal:9100"}, 256},
		{running, []string{"bal_backend_connections_active", "backend", "10.0.0.1:8080"}, 4},
		{running, []string{"bal_backend_connections_total", "backend", "[::1]:9000"}, 250},
		{running, []string{"bal_backend_connect_failures_total", "backend", "10.0.0.1:8080", "reason", "timeout"}, 1},
		{running, []string{"bal_backend_connect_failures_total", "backend", "[::1]:9000", "reason", "timeout"}, 2},
		{running, []string{"bal_backend_connect_failures_total", "backend", "[::1]:9000", "reason", "refused"}, 30},
		{running, []string{"bal_backend_connect_failures_total", "backend", "[::1]:9000", "reason", "other"}, 4},
		{running, []string{"bal_backend_connect_failures_total", "backend", "app-a.internal:9100", "reason", "refused"}, 0},
		{running, []string{"bal_local_connect_failures_total"}, 1},
		{running, []string{"bal_health_check_rounds_total"}, 40},
		{running, []string{"bal_protection_mode"}, 0},
		{running, []string{"bal_protection_mode_reason", "reason", "timeout_or_refused_storm"}, 0},
		{running, []string{"bal_reloads_total", "result", "ok"}, 3},
		{running, []string{"bal_reloads_total", "result", "error"}, 1},
		{running, []string{"bal_last_reload_successful"}, 1},
		{running, []string{"bal_access_log_dropped_total"}, 9},
		{prot, []string{"bal_info", "engine", "std", "method", "round_robin", "version", "v1.2.3"}, 1},
		{prot, []string{"bal_connections_active"}, 0},
		{prot, []string{"bal_protection_mode"}, 1},
		{prot, []string{"bal_protection_mode_reason", "reason", "all_backends_unavailable"}, 1},
		{prot, []string{"bal_protection_mode_reason", "reason", "timeout_or_refused_storm"}, 0},
		{prot, []string{"bal_protection_transitions_total"}, 3},
		{prot, []string{"bal_reloads_total", "result", "error"}, 2},
		{prot, []string{"bal_last_reload_successful"}, 0},
		{prot, []string{"bal_listeners_draining"}, 1},
		{prot, []string{"bal_backend_up", "backend", "127.0.0.1:9000"}, 0},
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
	Write(&buf, server.Status{Policy: policy.Status{Pools: []policy.PoolStatus{{Name: config.DefaultServiceName, Backends: []policy.BackendStatus{{Address: backend, Reachable: true}}}}}})
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
