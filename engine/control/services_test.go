package control

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/enginetest"
	"github.com/bal-lb/bal/engine/policy"
	"github.com/bal-lb/bal/engine/pool"
	"github.com/bal-lb/bal/engine/server"
)

var update = flag.Bool("update", false, "rewrite testdata/*.json")

// service is one service of a hand-built snapshot on 127.0.0.1:port.
func service(name string, port int, backends ...netip.AddrPort) config.Service {
	rt := config.Profile(len(backends))
	rt.Engine = config.EngineStd
	rt.HealthCheckInterval = 100 * time.Millisecond
	svc := config.Service{
		Name: name, Protocol: config.TCP, BindAddress: "127.0.0.1", Port: port, Method: config.LeastConnections,
		Runtime: rt, HealthCheck: config.HealthCheck{Type: config.CheckTCP},
		Access: config.Access{AcceptProxyProtocol: config.ProxyOff}, OnBackendDown: config.OnDownKeep,
	}
	for _, a := range backends {
		svc.Backends = append(svc.Backends, config.Backend{Host: a.Addr().String(), Port: int(a.Port()), Weight: 2})
	}
	return svc
}

// TestStatusServices: two real services behind one control socket; the
// document lists both with their own live numbers, and the top-level fields
// are the first one's.
func TestStatusServices(t *testing.T) {
	echo, other := enginetest.NewBackend(t, enginetest.Echo), enginetest.NewBackend(t, enginetest.Echo)
	pw, pd := freePort(t), freePort(t)
	web, db := service("web", pw, echo.Addr), service("db", pd, other.Addr, echo.Addr)
	db.Method = config.RoundRobin
	snap := &config.Snapshot{Mode: config.ModeAdvanced, LogLevel: slog.LevelInfo, Runtime: web.Runtime, Services: []config.Service{web, db}}
	srv := server.New(snap, server.Options{Engines: stdEngines})
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	ctl := New(srv, Options{})
	ln, err := Listen(filepath.Join(t.TempDir(), "bal.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ctl.Serve(ln) }()
	t.Cleanup(func() { _ = ctl.Close(); <-done })
	client := NewClient(ln.Path(), 5*time.Second)

	// Two connections through db, held open; none through web.
	for range 2 {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", pd), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Read(make([]byte, 4)); err != nil {
			t.Fatal(err)
		}
	}
	var st *Status
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st, err = client.Status(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(st.Services) == 2 && st.Services[1].ActiveConnections == 2 && st.Services[1].LastCheckTime != nil || time.Now().After(deadline) {
			break
		}
	}
	if len(st.Services) != 2 {
		t.Fatalf("services %+v", st.Services)
	}
	w, d := st.Services[0], st.Services[1]
	if w.Name != "web" || w.Protocol != "tcp" || w.Port != pw || w.Listen != fmt.Sprintf("127.0.0.1:%d", pw) || w.Engine != "std" ||
		w.Method != "least_connections" || w.ActiveConnections != 0 || w.TotalConnections != 0 || len(w.Backends) != 1 || len(w.Routes) != 0 {
		t.Errorf("web: %+v", w)
	}
	if d.Name != "db" || d.Listen != fmt.Sprintf("127.0.0.1:%d", pd) || d.Method != "round_robin" || d.ActiveConnections != 2 || d.TotalConnections != 2 ||
		len(d.Backends) != 2 || d.Backends[0].Address != other.Addr.String() || d.Backends[0].ActiveConnections+d.Backends[1].ActiveConnections != 2 ||
		d.Bytes.ClientToBackend != 8 || d.Bytes.BackendToClient != 8 || d.MaxConcurrentConnections != db.Runtime.MaxConcurrentConnections {
		t.Errorf("db: %+v", d)
	}
	for _, s := range st.Services {
		if len(s.RejectedConnections) != len(engine.RejectReasons()) || len(s.InspectResults) != len(engine.InspectResults()) {
			t.Errorf("%s: rejected %v inspect %v: want every reason and result", s.Name, s.RejectedConnections, s.InspectResults)
		}
	}
	// The top level describes the first service.
	if st.Port != pw || st.Listen != w.Listen || st.Method != "least_connections" || st.ActiveConnections != 0 || st.TotalConnections != 0 ||
		st.BackendTotal != 1 || st.Backends[0].Address != echo.Addr.String() || st.Backends[0].Weight != 2 {
		t.Errorf("top level: %+v", st)
	}
}

// shapeStatus is a constructed two-service state: one service routing by
// SNI, ALPN and source to two pools and a default pool, one plain.
func shapeStatus() server.Status {
	check := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	backend := func(addr string, up bool, active int64, total uint64) policy.BackendStatus {
		return policy.BackendStatus{Address: addr, Key: addr, Reachable: up, Checked: true, Weight: 1, Active: active, Total: total,
			LastCheck: check, Counters: pool.Counters{Timeout: 1}, Addrs: []netip.AddrPort{netip.MustParseAddrPort(addr)}}
	}
	rejected := func(acl uint64) map[engine.RejectReason]uint64 {
		m := map[engine.RejectReason]uint64{}
		for _, r := range engine.RejectReasons() {
			m[r] = 0
		}
		m[engine.RejectACL] = acl
		return m
	}
	inspected := func(sni uint64) map[engine.InspectResult]uint64 {
		m := map[engine.InspectResult]uint64{}
		for _, r := range engine.InspectResults() {
			m[r] = 0
		}
		m[engine.InspectSNI] = sni
		return m
	}
	web := server.ServiceStatus{
		Name: "web", Protocol: config.TCP, BindAddress: "0.0.0.0", Port: 443, Listen: netip.MustParseAddrPort("0.0.0.0:443"),
		Engine: "gnet", MaxConnections: 8000, Stats: engine.Stats{Accepted: 12, Active: 3, BytesIn: 1000, BytesOut: 20000},
		Policy: policy.Status{
			Service: "web", Protocol: config.TCP, Method: config.RoundRobin, Active: 3, Total: 12, Rejected: 2,
			RejectedBy: rejected(2), Inspected: inspected(12), HealthRounds: 9, LastCheck: check,
			Pools: []policy.PoolStatus{
				{Name: "api", Route: true, Method: config.LeastConnections, Matched: 7,
					Match:    config.Match{SNI: []string{"api.example.com", "*.example.net"}, ALPN: []string{"h2"}},
					Backends: []policy.BackendStatus{backend("10.0.0.1:443", true, 2, 7)}},
				{Name: "office", Route: true, Method: config.RoundRobin, Matched: 1,
					Match:    config.Match{Source: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}},
					Backends: []policy.BackendStatus{backend("10.0.0.2:443", false, 0, 1)}},
				{Name: config.DefaultServiceName, Method: config.RoundRobin, Matched: 4,
					Backends: []policy.BackendStatus{backend("10.0.0.3:443", true, 1, 4)}},
			},
		},
	}
	db := server.ServiceStatus{
		Name: "db", Protocol: config.TCP, BindAddress: "127.0.0.1", Port: 5432, Listen: netip.MustParseAddrPort("127.0.0.1:5432"),
		Engine: "gnet", MaxConnections: 4000, Draining: 1,
		Policy: policy.Status{
			Service: "db", Protocol: config.TCP, Method: config.LeastConnections, RejectedBy: rejected(0), Inspected: inspected(0),
			Protection: policy.ProtectionStatus{Enabled: true, Reason: "all_backends_unavailable", Since: check, Transitions: 1},
			Pools:      []policy.PoolStatus{{Name: config.DefaultServiceName, Method: config.LeastConnections, Backends: []policy.BackendStatus{backend("10.0.1.1:5432", false, 0, 0)}}},
		},
	}
	return server.Status{
		PID: 4242, ConfigPath: "/etc/bal/config.yaml", Engine: "gnet", FDsPerConn: 2, Started: check.Add(-time.Hour), Draining: 1,
		Services:    []server.ServiceStatus{web, db},
		BindAddress: web.BindAddress, Port: web.Port, Listen: web.Listen, Method: string(web.Policy.Method), Policy: web.Policy,
		Accepted: web.Stats.Accepted, BytesIn: web.Stats.BytesIn, BytesOut: web.Stats.BytesOut,
	}
}

// TestStatusServicesGolden pins services[] exactly (testdata/services.json;
// -update rewrites it): names, nesting, every reason and result, routes with
// their match and pools.
func TestStatusServicesGolden(t *testing.T) {
	st := StatusFrom(shapeStatus(), nil, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	got, err := json.MarshalIndent(map[string]any{"services": st.Services}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "services.json")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("services[] differs from %s (run with -update to accept):\n%s", path, got)
	}
	// The top level is the first service's: its default pool, its
	// counters; rejected_connections stays one number.
	if st.BackendTotal != 1 || st.Backends[0].Address != "10.0.0.3:443" || st.RejectedConnections != 2 || st.TotalConnections != 12 ||
		st.Port != 443 || st.Method != "round_robin" || st.ProtectionMode.Enabled || st.DrainingListeners != 1 {
		t.Errorf("top level: %+v", st)
	}
	var doc map[string]any
	raw, _ := json.Marshal(st)
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if _, ok := doc["rejected_connections"].(float64); !ok {
		t.Errorf("top-level rejected_connections is %T, want a number", doc["rejected_connections"])
	}
	svc := doc["services"].([]any)[0].(map[string]any)
	var keys []string
	for k := range svc {
		keys = append(keys, k)
	}
	for _, k := range []string{"name", "protocol", "bind_address", "port", "listen", "engine", "method", "active_connections", "total_connections",
		"rejected_connections", "inspect_results", "bytes", "protection_mode", "backends", "routes"} {
		if !slices.Contains(keys, k) {
			t.Errorf("services[0] lacks %q: %v", k, keys)
		}
	}
}
