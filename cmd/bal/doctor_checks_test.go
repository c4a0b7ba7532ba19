package main

import (
	"slices"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/control"
	"github.com/bal-lb/bal/engine/policy"
	"github.com/bal-lb/bal/engine/server"
)

// statusOf is the status a bal running snap reports on its control socket.
func statusOf(snap *config.Snapshot) *control.Status {
	bs := make([]policy.BackendStatus, 0, len(snap.Backends))
	for _, b := range snap.Backends {
		bs = append(bs, policy.BackendStatus{Address: b.Address(), Key: b.Key(), Reachable: true, Weight: b.Weight})
	}
	st := control.StatusFrom(server.Status{
		BindAddress: snap.BindAddress, Port: snap.Port, Method: string(snap.Method),
		Policy: policy.Status{Method: snap.Method, Pools: []policy.PoolStatus{{Name: config.DefaultServiceName, Backends: bs}}},
	}, snap, time.Now())
	return &st
}

// TestDoctorPendingChanges: with a bal running, doctor lists what the file
// on disk would change in the words 'bal graceful' prints (Snapshot.Changes);
// runtime keys the status does not carry are not compared.
func TestDoctorPendingChanges(t *testing.T) {
	parse := func(t *testing.T, yaml string) *config.Snapshot {
		t.Helper()
		s, err := config.Parse([]byte(yaml), "")
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	const base = "bind_address: 127.0.0.1\nbackends:\n  - {host: 10.0.0.1, port: 80}\n  - {host: \"::1\", port: 81, weight: 2}\n"
	live := statusOf(parse(t, base))
	tests := []struct {
		name string
		disk string
		want []string
	}{
		{"same file", base, nil},
		{"same file with other spellings", "bind_address: 127.0.0.1\nbackends:\n  - {host: 10.0.0.1, port: 80}\n  - {host: \"[0::1]\", port: 81, weight: 2}\n", nil},
		{"listener, method and log level", "port: 9300\nbind_address: \"::1\"\nmethod: source_hash\nlog_level: debug\nbackends:\n  - {host: 10.0.0.1, port: 80}\n  - {host: \"::1\", port: 81, weight: 2}\n",
			[]string{"port: 9295 -> 9300", "bind_address: 127.0.0.1 -> ::1", "method: round_robin -> source_hash", "log_level: info -> debug"}},
		{"backends", "bind_address: 127.0.0.1\nbackends:\n  - {host: \"::1\", port: 81, weight: 5}\n  - {host: app.internal, port: 80}\n",
			[]string{"backend removed: 10.0.0.1:80", "backend [::1]:81 weight: 2 -> 5", "backend added: app.internal:80 (weight 1)"}},
		{"runtime keys in the status", "mode: advanced\nbind_address: 127.0.0.1\nbackends:\n  - {host: 10.0.0.1, port: 80}\n  - {host: \"::1\", port: 81, weight: 2}\n" +
			"runtime:\n  max_concurrent_connections: 100\n  tcp_backlog: 128\n  drain_timeout_ms: 1000\n  access_log: true\n",
			[]string{"mode: simple -> advanced", "runtime.max_concurrent_connections: 4000 -> 100", "runtime.tcp_backlog: 0 -> 128",
				"runtime.drain_timeout_ms: 30000 -> 1000", "runtime.access_log: false -> true"}},
		{"runtime keys not in the status", "mode: advanced\nbind_address: 127.0.0.1\nbackends:\n  - {host: 10.0.0.1, port: 80}\n  - {host: \"::1\", port: 81, weight: 2}\n" +
			"runtime:\n  health_check_interval_ms: 700\n", []string{"mode: simple -> advanced"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			disk := parse(t, tt.disk)
			if got := disk.Changes(runningSnapshot(live, disk)); !slices.Equal(got, tt.want) {
				t.Errorf("pending changes\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}
