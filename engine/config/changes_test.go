package config

import (
	"slices"
	"testing"
)

func TestChanges(t *testing.T) {
	base := "bind_address: 127.0.0.1\nbackends:\n  - {host: 10.0.0.1, port: 80}\n  - {host: \"::1\", port: 81, weight: 2}\n"
	old := mustParse(t, base)
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"same", base, nil},
		{"same with other spellings", "bind_address: 127.0.0.1\nbackends:\n  - {host: 10.0.0.1, port: 80}\n  - {host: \"[0::1]\", port: 81, weight: 2}\n", nil},
		{"listener and method", "port: 9300\nbind_address: \"::1\"\nmethod: source_hash\nlog_level: debug\nbackends:\n  - {host: 10.0.0.1, port: 80}\n  - {host: \"::1\", port: 81, weight: 2}\n",
			[]string{"port: 9295 -> 9300", "bind_address: 127.0.0.1 -> ::1", "method: round_robin -> source_hash", "log_level: info -> debug"}},
		{"backends", "bind_address: 127.0.0.1\nbackends:\n  - {host: \"::1\", port: 81, weight: 5}\n  - {host: app.internal, port: 80}\n",
			[]string{"backend removed: 10.0.0.1:80", "backend [::1]:81 weight: 2 -> 5", "backend added: app.internal:80 (weight 1)"}},
		{"runtime", "mode: advanced\nbind_address: 127.0.0.1\nbackends:\n  - {host: 10.0.0.1, port: 80}\n  - {host: \"::1\", port: 81, weight: 2}\nruntime:\n  health_check_interval_ms: 700\n  metrics_address: 127.0.0.1:9100\n",
			[]string{"mode: simple -> advanced", "runtime.health_check_interval_ms: 500 -> 700", "runtime.metrics_address: (none) -> 127.0.0.1:9100"}},
		{"profile follows the backend count", "bind_address: 127.0.0.1\nbackends:\n  - {host: 10.0.0.1, port: 80}\n  - {host: \"::1\", port: 81, weight: 2}\n  - {host: 10.0.0.3, port: 80}\n",
			[]string{"backend added: 10.0.0.3:80 (weight 1)", "runtime.health_check_interval_ms: 500 -> 700", "runtime.health_check_timeout_ms: 800 -> 1000",
				"runtime.backend_connect_timeout_ms: 800 -> 1000", "runtime.failover_backoff_initial_ms: 200 -> 300", "runtime.failover_backoff_max_ms: 5000 -> 7000",
				"runtime.backend_cooldown_ms: 500 -> 700", "runtime.protection_trigger_threshold: 10 -> 12", "runtime.protection_stable_success_threshold: 12 -> 14",
				"runtime.max_concurrent_connections: 4000 -> 8000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustParse(t, tt.yaml).Changes(old)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Changes =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
	if got := old.Changes(nil); got != nil {
		t.Errorf("Changes(nil) = %q", got)
	}
}
