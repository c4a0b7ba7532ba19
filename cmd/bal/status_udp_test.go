package main

import (
	"strings"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/control"
)

// udpService is a UDP service as GET /status sends it.
func udpService(name string) control.Service {
	check := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	active, total, limit := int64(3), uint64(40), 500
	be := func(addr string, flows int64, total uint64) control.Backend {
		n := flows
		return control.Backend{Address: addr, Reachable: true, Checked: true, Weight: 1, ActiveConnections: flows, TotalConnections: total,
			LastCheckTime: &check, Addresses: []string{addr}, ActiveFlows: &n}
	}
	dropped := map[string]uint64{}
	for _, n := range engine.UDPDropNames() {
		dropped[n] = 0
	}
	dropped["limit"], dropped["backend_busy"] = 7, 2
	return control.Service{
		Name: name, Protocol: "udp", BindAddress: "127.0.0.1", Port: 53, Listen: "127.0.0.1:53", Engine: "std", Method: "round_robin",
		ActiveConnections: active, TotalConnections: total,
		RejectedConnections: map[string]uint64{"limit": 7}, InspectResults: map[string]uint64{},
		Bytes:    control.Bytes{ClientToBackend: 2400, BackendToClient: 9600},
		Backends: []control.Backend{be("127.0.0.1:5301", 2, 21), be("127.0.0.1:5302", 1, 19)}, Routes: []control.Route{},
		ActiveFlows: &active, TotalFlows: &total, MaxUDPFlows: &limit,
		Datagrams: &control.Datagrams{ClientToBackend: 60, BackendToClient: 58}, Dropped: dropped,
	}
}

// TestStatusUDPReport: a UDP service is listed with its flows, and under
// --verbose its datagrams, drops by reason and flow limit.
func TestStatusUDPReport(t *testing.T) {
	f := servicesStatus(func(st *control.Status) { st.Services = append(st.Services, udpService("dns")) })
	var concise, verbose strings.Builder
	statusReport(statusFrom(f, ""), false).write(&concise)
	statusReport(statusFrom(f, ""), true).write(&verbose)
	for _, want := range []string{
		"    - dns udp 127.0.0.1:53: 2/2 backends reachable, 3 active flows, 40 total flows, protection off\n",
	} {
		if !strings.Contains(concise.String(), want) {
			t.Errorf("concise report lacks %q:\n%s", want, concise.String())
		}
	}
	for _, want := range []string{
		"      datagrams: client_to_backend=60 backend_to_client=58\n",
		"      dropped: limit=7 acl=0 source_limit=0 source_rate=0 no_route=0 no_backend=0 backend_busy=2 client_busy=0 draining=0 local=0 send_error=0\n",
		"      max_udp_flows: 500\n",
		"      backend: default 127.0.0.1:5301 reachable=true weight=1 active_flows=2 total_flows=21 last_check=",
	} {
		if !strings.Contains(verbose.String(), want) {
			t.Errorf("verbose report lacks %q:\n%s", want, verbose.String())
		}
	}
	if strings.Contains(verbose.String(), "rejected: limit=7") {
		t.Errorf("a UDP service shows rejected connections besides its drops:\n%s", verbose.String())
	}

	// A single UDP service named default is shown with its flows too.
	single := liveStatus(func(st *control.Status) { st.Services = []control.Service{udpService("default")} })
	var b strings.Builder
	statusReport(statusFrom(single, ""), false).write(&b)
	if !strings.Contains(b.String(), "default udp 127.0.0.1:53: 2/2 backends reachable, 3 active flows, 40 total flows") {
		t.Errorf("single UDP service:\n%s", b.String())
	}
}
