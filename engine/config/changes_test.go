package config

import (
	"slices"
	"strings"
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

func TestChangesServices(t *testing.T) {
	base := doc(
		"mode: advanced",
		"services:",
		"  - name: web",
		"    bind_address: 127.0.0.1",
		"    port: 443",
		"    routes:",
		"      - name: api",
		"        match: {sni: [api.example.com]}",
		"        backends: [{host: 10.0.0.1, port: 443}, {host: 10.0.0.2, port: 443}]",
		"      - name: blog",
		"        match: {sni: [blog.example.com]}",
		"        backends: [{host: 10.0.0.4, port: 443}]",
		"    backends: [{host: 10.0.0.9, port: 443}]",
		"  - name: db",
		"    bind_address: 127.0.0.1",
		"    port: 5432",
		"    backends: [{host: 10.0.1.1, port: 5432}]",
	)
	api := "      - name: api\n        match: {sni: [api.example.com]}\n        backends: [{host: 10.0.0.1, port: 443}, {host: 10.0.0.2, port: 443}]\n"
	blog := "      - name: blog\n        match: {sni: [blog.example.com]}\n        backends: [{host: 10.0.0.4, port: 443}]\n"
	old := mustParse(t, base)
	edit := func(from, to string) string {
		if !strings.Contains(base, from) {
			t.Fatalf("base has no %q", from)
		}
		return strings.Replace(base, from, to, 1)
	}
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"same", base, nil},
		{"port", edit("port: 443", "port: 8443"), []string{"service web: port: 443 -> 8443"}},
		{"route backend added", edit("{host: 10.0.0.2, port: 443}]", "{host: 10.0.0.2, port: 443}, {host: 10.0.0.3, port: 443}]"),
			[]string{"service web: route api: backend added: 10.0.0.3:443 (weight 1)"}}, // 3 → 4 backends in web's pools: the profile is the same (3–5).

		{"route backend reweighted and removed", edit("[{host: 10.0.0.1, port: 443}, {host: 10.0.0.2, port: 443}]", "[{host: 10.0.0.1, port: 443, weight: 3}]"),
			[]string{"service web: route api: backend removed: 10.0.0.2:443", "service web: route api: backend 10.0.0.1:443 weight: 1 -> 3"}},
		{"profile follows the service's backends", edit("    backends: [{host: 10.0.1.1, port: 5432}]", "    backends: [{host: 10.0.1.1, port: 5432}, {host: 10.0.1.2, port: 5432}, {host: 10.0.1.3, port: 5432}]"),
			[]string{"service db: backend added: 10.0.1.2:5432 (weight 1)", "service db: backend added: 10.0.1.3:5432 (weight 1)",
				"service db: runtime.health_check_interval_ms: 500 -> 700", "service db: runtime.health_check_timeout_ms: 800 -> 1000",
				"service db: runtime.backend_connect_timeout_ms: 800 -> 1000", "service db: runtime.failover_backoff_initial_ms: 200 -> 300",
				"service db: runtime.failover_backoff_max_ms: 5000 -> 7000", "service db: runtime.backend_cooldown_ms: 500 -> 700",
				"service db: runtime.protection_trigger_threshold: 10 -> 12", "service db: runtime.protection_stable_success_threshold: 12 -> 14",
				"service db: runtime.max_concurrent_connections: 4000 -> 8000"}},
		{"route match and method", edit("match: {sni: [api.example.com]}", "match: {sni: [api.example.com, \"*.api.example.com\"]}\n        method: least_connections"),
			[]string{"service web: route api: match: sni=api.example.com -> sni=api.example.com,*.api.example.com", "service web: route api: method: round_robin -> least_connections"}},
		{"route removed and added", edit("name: blog", "name: news"), []string{"service web: route blog: removed", "service web: route news: added (sni=blog.example.com, 1 backends)"}},
		{"routes reordered", edit(api+blog, blog+api), []string{"service web: routes order: api, blog -> blog, api"}},
		{"default pool", edit("[{host: 10.0.0.9, port: 443}]", "[{host: 10.0.0.8, port: 443}]"),
			[]string{"service web: backend removed: 10.0.0.9:443", "service web: backend added: 10.0.0.8:443 (weight 1)"}},
		{"access and health", edit("    port: 5432\n", "    port: 5432\n    allow: [10.0.0.0/8]\n    connection_rate_per_source: 5/s\n    max_connections_per_source: 9\n    on_backend_down: close\n    health_check: {type: http, http_path: /up}\n    accept_proxy_protocol: v2\n    trusted_proxies: [10.1.0.0/16]\n"),
			[]string{"service db: on_backend_down: keep -> close", "service db: health_check: tcp -> http GET /up status 200-399",
				"service db: allow: (none) -> 10.0.0.0/8", "service db: max_connections_per_source: (none) -> 9", "service db: connection_rate_per_source: (none) -> 5/s",
				"service db: accept_proxy_protocol: off -> v2", "service db: trusted_proxies: (none) -> 10.1.0.0/16"}},
		{"service removed and added", edit("name: db", "name: pg"), []string{"service db: removed", "service pg: added"}},
		{"process and service runtime", edit("mode: advanced\n", "mode: advanced\nruntime: {engine: std, tls_inspect_timeout_ms: 100}\n"),
			[]string{"runtime.engine: auto -> std", "service web: runtime.tls_inspect_timeout_ms: 5000 -> 100", "service db: runtime.tls_inspect_timeout_ms: 5000 -> 100"}},
		{"protocol", edit("    port: 5432\n", "    port: 5432\n    protocol: udp\n"), []string{"service db: protocol: tcp -> udp", "service db: health_check: tcp -> passive"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustParse(t, tt.yaml).Changes(old)
			if !slices.Equal(got, tt.want) {
				t.Errorf("Changes =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}

	// From the single-service form to services: the service "default" is
	// compared by name like any other.
	single := mustParse(t, "bind_address: 127.0.0.1\nport: 443\nbackends: [{host: 10.0.0.9, port: 443}]\n")
	multi := mustParse(t, doc("services:", "  - name: default", "    bind_address: 127.0.0.1", "    port: 443", "    backends: [{host: 10.0.0.9, port: 443}]",
		"  - name: db", "    bind_address: 127.0.0.1", "    port: 5432", "    backends: [{host: 10.0.1.1, port: 5432}]"))
	if got, want := multi.Changes(single), []string{"service db: added"}; !slices.Equal(got, want) {
		t.Errorf("single -> services: %q, want %q", got, want)
	}
	// The single form's own service keys keep the old unprefixed wording.
	withRoute := mustParse(t, "bind_address: 127.0.0.1\nport: 443\nbackends: [{host: 10.0.0.9, port: 443}]\nallow: [10.0.0.0/8]\nroutes: [{name: r, match: {alpn: [h2]}, backends: [{host: a, port: 1}]}]\n")
	want := []string{"allow: (none) -> 10.0.0.0/8", "route r: added (alpn=h2, 1 backends)"}
	if got := withRoute.Changes(single); !slices.Equal(got, want) {
		t.Errorf("single with a route: %q, want %q", got, want)
	}
}
