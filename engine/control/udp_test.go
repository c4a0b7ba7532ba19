package control

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/policy"
	"github.com/bal-lb/bal/engine/server"
)

// TestStatusUDPService pins a UDP service's entry of services[]
// (testdata/udp.json; -update rewrites it): flows, datagrams, drops by
// every reason, active_flows per backend; a TCP service has none of them.
func TestStatusUDPService(t *testing.T) {
	be := func(addr string, active int64, total uint64) policy.BackendStatus {
		return policy.BackendStatus{Address: addr, Key: addr, Reachable: true, Checked: true, Weight: 1, Active: active, Total: total,
			Addrs: []netip.AddrPort{netip.MustParseAddrPort(addr)}}
	}
	dns := server.ServiceStatus{
		Name: "dns", Protocol: config.UDP, BindAddress: "127.0.0.1", Port: 53, Listen: netip.MustParseAddrPort("127.0.0.1:53"),
		Engine: "std", MaxConnections: 4000, MaxUDPFlows: 500,
		Stats: engine.Stats{Accepted: 40, Active: 3, BytesIn: 2400, BytesOut: 9600, DatagramsIn: 60, DatagramsOut: 58,
			Dropped: engine.DropCounts{engine.DropBackendBusy: 2, engine.DropDraining: 1}},
		Policy: policy.Status{
			Service: "dns", Protocol: config.UDP, Method: config.RoundRobin, Active: 3, Total: 40, Rejected: 9,
			RejectedBy: map[engine.RejectReason]uint64{engine.RejectLimit: 7, engine.RejectSourceRate: 2},
			Pools: []policy.PoolStatus{{Name: config.DefaultServiceName, Method: config.RoundRobin, Matched: 40,
				Backends: []policy.BackendStatus{be("127.0.0.1:5301", 2, 21), be("127.0.0.1:5302", 1, 19)}}},
		},
	}
	web := server.ServiceStatus{
		Name: "web", Protocol: config.TCP, BindAddress: "127.0.0.1", Port: 53, Listen: netip.MustParseAddrPort("127.0.0.1:53"), Engine: "std",
		Policy: policy.Status{Service: "web", Protocol: config.TCP, Method: config.RoundRobin,
			Pools: []policy.PoolStatus{{Name: config.DefaultServiceName, Backends: []policy.BackendStatus{be("127.0.0.1:8053", 0, 0)}}}},
	}
	st := StatusFrom(server.Status{Services: []server.ServiceStatus{dns, web}}, nil, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	got, err := json.MarshalIndent(map[string]any{"services": st.Services}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	path := filepath.Join("testdata", "udp.json")
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
	var doc struct {
		Services []map[string]any `json:"services"`
	}
	if err := json.Unmarshal(got, &doc); err != nil {
		t.Fatal(err)
	}
	u, tcp := doc.Services[0], doc.Services[1]
	for _, k := range []string{"active_flows", "total_flows", "datagrams", "dropped", "max_udp_flows"} {
		if _, ok := u[k]; !ok {
			t.Errorf("the UDP service lacks %q", k)
		}
		if _, ok := tcp[k]; ok {
			t.Errorf("the TCP service has %q", k)
		}
	}
	dropped := u["dropped"].(map[string]any)
	if len(dropped) != len(engine.UDPDropNames()) || dropped["limit"] != 7.0 || dropped["source_rate"] != 2.0 || dropped["backend_busy"] != 2.0 {
		t.Errorf("dropped = %v", dropped)
	}
	if b := u["backends"].([]any)[0].(map[string]any); b["active_flows"] != 2.0 {
		t.Errorf("UDP backend active_flows = %v", b["active_flows"])
	}
	if b := tcp["backends"].([]any)[0].(map[string]any); b["active_flows"] != nil {
		t.Errorf("TCP backend has active_flows %v", b["active_flows"])
	}
}
