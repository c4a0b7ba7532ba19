package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine/control"
	"github.com/bal-lb/bal/engine/pidfile"
)

// servicesStatus is a running bal with two services: web routes by SNI and
// source to two pools and has a default pool; db is plain.
func servicesStatus(mod func(st *control.Status)) *found {
	check := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	be := func(addr string, up bool, active int64, total uint64) control.Backend {
		return control.Backend{Address: addr, Reachable: up, Checked: true, Weight: 1, ActiveConnections: active, TotalConnections: total,
			LastCheckTime: &check, Addresses: []string{addr}}
	}
	counts := func(names []string, set map[string]uint64) map[string]uint64 {
		m := map[string]uint64{}
		for _, n := range names {
			m[n] = set[n]
		}
		return m
	}
	web := control.Service{
		Name: "web", Protocol: "tcp", BindAddress: "0.0.0.0", Port: 443, Listen: "0.0.0.0:443", Engine: "gnet", Method: "round_robin",
		ActiveConnections: 3, TotalConnections: 12,
		RejectedConnections: counts(rejectReasonNames(), map[string]uint64{"acl": 2, "no_route": 1}),
		InspectResults:      counts(inspectResultNames(), map[string]uint64{"sni": 11, "not_tls": 1}),
		Bytes:               control.Bytes{ClientToBackend: 100, BackendToClient: 2000}, LastCheckTime: &check,
		Backends: []control.Backend{be("10.0.0.3:443", true, 1, 4)},
		Routes: []control.Route{
			{Name: "api", Match: control.Match{SNI: []string{"api.example.com", "*.example.net"}, ALPN: []string{"h2"}, Source: []string{}},
				MatchedTotal: 7, Method: "least_connections", Backends: []control.Backend{be("10.0.0.1:443", true, 2, 7)}},
			{Name: "office", Match: control.Match{SNI: []string{}, ALPN: []string{}, Source: []string{"10.1.0.0/16"}},
				MatchedTotal: 1, Method: "round_robin", Backends: []control.Backend{be("10.0.0.2:443", true, 0, 1)}},
		},
	}
	db := control.Service{
		Name: "db", Protocol: "tcp", BindAddress: "127.0.0.1", Port: 5432, Listen: "127.0.0.1:5432", Engine: "gnet", Method: "least_connections",
		ActiveConnections: 1, TotalConnections: 5,
		RejectedConnections: counts(rejectReasonNames(), nil), InspectResults: counts(inspectResultNames(), nil),
		Bytes: control.Bytes{ClientToBackend: 10, BackendToClient: 20}, LastCheckTime: &check,
		Backends: []control.Backend{be("10.0.1.1:5432", true, 1, 5), be("10.0.1.2:5432", true, 0, 0)},
		Routes:   []control.Route{},
	}
	st := &control.Status{
		State: control.StateRunning, PID: 4242, Version: "v1", ConfigPath: "/etc/bal/config.yaml",
		BindAddress: web.BindAddress, Port: web.Port, Listen: web.Listen, Method: web.Method, Engine: "gnet",
		UptimeS: 61, BackendTotal: 1, BackendReachable: 1, Backends: web.Backends,
		ActiveConnections: 3, TotalConnections: 12, RejectedConnections: 3, LastCheckTime: &check, DrainTimeoutMS: 30000,
		Services: []control.Service{web, db},
	}
	if mod != nil {
		mod(st)
	}
	return &found{home: "/h", sockPath: "/h/bal.sock", pidPath: "/h/bal.pid", live: st, pid: st.PID}
}

func TestStatusServicesReport(t *testing.T) {
	var b strings.Builder
	statusReport(statusFrom(servicesStatus(nil), ""), false).write(&b)
	want := `bal status
  overall: OK
  daemon: running (pid=4242)
  backends: 5/5 reachable
  connections: 4 active, 17 total
  protection_mode: off
  services: 2
    - web tcp 0.0.0.0:443: 3/3 backends reachable, 3 active, 12 total, protection off
    - db tcp 127.0.0.1:5432: 2/2 backends reachable, 1 active, 5 total, protection off
  next: continue monitoring with 'bal status'
`
	if b.String() != want {
		t.Errorf("concise:\n%s\nwant\n%s", b.String(), want)
	}

	b.Reset()
	statusReport(statusFrom(servicesStatus(nil), ""), true).write(&b)
	want = `bal status
  overall: OK
  daemon: running (pid=4242)
  backends: 5/5 reachable
  connections: 4 active, 17 total
  protection_mode: off
  engine: gnet
  config: /etc/bal/config.yaml
  version: v1
  uptime: 1m1s
  active_connections: 4
  total_connections: 17
  rejected_connections: 3
  bytes: client_to_backend=110 backend_to_client=2020
  reloads: 0 ok, 0 rejected
  last_reload: none
  services: 2
    - web tcp 0.0.0.0:443: 3/3 backends reachable, 3 active, 12 total, protection off
      listen: 0.0.0.0:443
      method: round_robin
      rejected: limit=0 acl=2 source_limit=0 source_rate=0 proxy_header=0 no_route=1
      inspect: sni=11 no_sni=0 not_tls=1 malformed=0 timeout=0 too_large=0 closed=0
      bytes: client_to_backend=100 backend_to_client=2000
      last_check_time: 2026-01-02T03:04:05Z
      route: api match(sni=api.example.com,*.example.net alpn=h2) method=least_connections matched=7
      route: office match(source=10.1.0.0/16) method=round_robin matched=1
      backend: api 10.0.0.1:443 reachable=true weight=1 active=2 total=7 last_check=2026-01-02T03:04:05Z counters(timeout=0, refused=0, other=0)
      backend: office 10.0.0.2:443 reachable=true weight=1 active=0 total=1 last_check=2026-01-02T03:04:05Z counters(timeout=0, refused=0, other=0)
      backend: default 10.0.0.3:443 reachable=true weight=1 active=1 total=4 last_check=2026-01-02T03:04:05Z counters(timeout=0, refused=0, other=0)
    - db tcp 127.0.0.1:5432: 2/2 backends reachable, 1 active, 5 total, protection off
      listen: 127.0.0.1:5432
      method: least_connections
      rejected: limit=0 acl=0 source_limit=0 source_rate=0 proxy_header=0 no_route=0
      bytes: client_to_backend=10 backend_to_client=20
      last_check_time: 2026-01-02T03:04:05Z
      backend: default 10.0.1.1:5432 reachable=true weight=1 active=1 total=5 last_check=2026-01-02T03:04:05Z counters(timeout=0, refused=0, other=0)
      backend: default 10.0.1.2:5432 reachable=true weight=1 active=0 total=0 last_check=2026-01-02T03:04:05Z counters(timeout=0, refused=0, other=0)
  next: continue monitoring with 'bal status'
`
	if b.String() != want {
		t.Errorf("verbose:\n%s\nwant\n%s", b.String(), want)
	}
}

// TestStatusServicesJudgement: the overall result looks at every service
// and pool, not only the first service's default pool.
func TestStatusServicesJudgement(t *testing.T) {
	reason := "all_backends_unavailable"
	tests := []struct {
		name    string
		mod     func(st *control.Status)
		overall string
		what    string
		why     string // substring of why_likely, "" for any
		brief   string
	}{
		{"healthy", nil, levelOK, "", "",
			"OK running pid=4242 with 2 services (gnet), 5/5 backends reachable, 4 active connections, protection off\n"},
		{"a route's pool down", func(st *control.Status) { st.Services[0].Routes[0].Backends[0].Reachable = false },
			levelWarn, "some backends are unreachable", "web/api: 0/1 reachable", ""},
		{"the second service half down", func(st *control.Status) { st.Services[1].Backends[1].Reachable = false },
			levelWarn, "some backends are unreachable", "db/default: 1/2 reachable",
			"WARN running pid=4242 with 2 services (gnet), 4/5 backends reachable, 4 active connections, protection off: some backends are unreachable\n"},
		{"protection on the second service", func(st *control.Status) {
			st.Services[1].ProtectionMode = control.Protection{Enabled: true, Reason: &reason}
		}, levelWarn, "protection mode is on (db: all_backends_unavailable)", "", ""},
		{"nothing reachable", func(st *control.Status) {
			for i := range st.Services {
				for j := range st.Services[i].Backends {
					st.Services[i].Backends[j].Reachable = false
				}
				for j := range st.Services[i].Routes {
					for k := range st.Services[i].Routes[j].Backends {
						st.Services[i].Routes[j].Backends[k].Reachable = false
					}
				}
			}
		}, levelWarn, "no backend is reachable", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := statusFrom(servicesStatus(tt.mod), "")
			if res.Overall != tt.overall || res.fault.what != tt.what || !strings.Contains(res.fault.why, tt.why) {
				t.Errorf("overall %s, fault %+v; want %s, %q, why containing %q", res.Overall, res.fault, tt.overall, tt.what, tt.why)
			}
			if tt.brief != "" {
				var b strings.Builder
				brief(&b, res.Overall, statusBrief(res))
				if b.String() != tt.brief {
					t.Errorf("brief %q, want %q", b.String(), tt.brief)
				}
			}
		})
	}
}

// TestStatusServicesJSON: --json passes services[] through as the daemon
// sent it, and keeps the single-service fields the first service's.
func TestStatusServicesJSON(t *testing.T) {
	f := servicesStatus(nil)
	var out bytes.Buffer
	if err := writeJSON(&out, statusFrom(f, "")); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services []control.Service `json:"services"`
		Port     int               `json:"port"`
		Rejected uint64            `json:"rejected_connections"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(f.live.Services)
	got, _ := json.Marshal(doc.Services)
	if !bytes.Equal(got, want) {
		t.Errorf("services[]:\n%s\nwant\n%s", got, want)
	}
	if doc.Port != 443 || doc.Rejected != 3 {
		t.Errorf("top level port %d rejected %d, want the first service's", doc.Port, doc.Rejected)
	}
	// Not running: an empty list, never null.
	var stopped bytes.Buffer
	if err := writeJSON(&stopped, statusFrom(&found{home: "/h", pidErr: pidfile.ErrNotRunning, liveErr: control.ErrNotRunning}, "")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stopped.String(), `"services": []`) {
		t.Errorf("stopped status: %s", stopped.String())
	}
}

// TestStatusSingleServiceUnchanged: one service named default without
// routes reads exactly as before services existed.
func TestStatusSingleServiceUnchanged(t *testing.T) {
	plain := liveStatus(nil)
	withService := liveStatus(func(st *control.Status) {
		st.Services = []control.Service{{Name: "default", Protocol: "tcp", BindAddress: st.BindAddress, Port: st.Port, Listen: st.Listen,
			Engine: st.Engine, Method: st.Method, ActiveConnections: 99, Backends: st.Backends, Routes: []control.Route{}}}
	})
	for _, verbose := range []bool{false, true} {
		var a, b strings.Builder
		statusReport(statusFrom(plain, ""), verbose).write(&a)
		statusReport(statusFrom(withService, ""), verbose).write(&b)
		if a.String() != b.String() {
			t.Errorf("verbose=%v: with the default service listed:\n%s\nwithout:\n%s", verbose, b.String(), a.String())
		}
	}
}
