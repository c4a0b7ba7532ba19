package config

import (
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"
)

// one is a valid backends block appended to snippets that test other keys.
const one = "backends:\n  - host: 127.0.0.1\n    port: 9000\n"

// wantIssue is an expected error or warning: a substring of its message and
// its line (0: not tied to a line).
type wantIssue struct {
	sub  string
	line int
}

func mustParse(t *testing.T, y string) *Snapshot {
	t.Helper()
	s, err := Parse([]byte(y), "t.yaml")
	if err != nil {
		t.Fatalf("Parse(%q): unexpected error: %v", y, err)
	}
	return s
}

func parseErr(t *testing.T, y string) *Error {
	t.Helper()
	s, err := Parse([]byte(y), "t.yaml")
	if err == nil {
		t.Fatalf("Parse(%q) = %+v, want an error", y, s)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("errors.Is(%v, ErrInvalid) = false", err)
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("error %T is not an *Error", err)
	}
	return ce
}

// matchIssues checks that got holds exactly the wanted issues, in order.
func matchIssues(t *testing.T, kind string, got []Issue, want []wantIssue) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d issues %v, want %d %v", kind, len(got), got, len(want), want)
	}
	for i, w := range want {
		if !strings.Contains(got[i].Message, w.sub) || got[i].Line != w.line {
			t.Errorf("%s[%d] = %q (line %d), want one containing %q on line %d", kind, i, got[i].Message, got[i].Line, w.sub, w.line)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	s := mustParse(t, one)
	if s.Mode != ModeSimple || s.Port != 9295 || s.BindAddress != "0.0.0.0" || s.Method != RoundRobin || s.LogLevel != slog.LevelInfo {
		t.Errorf("defaults: got mode=%s port=%d bind=%s method=%s level=%v", s.Mode, s.Port, s.BindAddress, s.Method, s.LogLevel)
	}
	if len(s.Backends) != 1 || s.Backends[0] != (Backend{Host: "127.0.0.1", Port: 9000, Weight: 1, Line: 2}) {
		t.Errorf("backends = %+v", s.Backends)
	}
	if s.Runtime != Profile(1) {
		t.Errorf("runtime = %+v, want Profile(1)", s.Runtime)
	}
	if s.Path != "t.yaml" {
		t.Errorf("Path = %q", s.Path)
	}
	// The default bind address is all interfaces: say so, without a line.
	matchIssues(t, "warnings", s.Warnings, []wantIssue{{"bind_address is 0.0.0.0 (listens on all interfaces, the default", 0}})
	if s.ListenAddress() != "0.0.0.0:9295" {
		t.Errorf("ListenAddress = %q", s.ListenAddress())
	}
}

// TestParseTopLevel covers every rule of the top-level keys (docs/configuration.md#top-level-keys), one case per rule.
func TestParseTopLevel(t *testing.T) {
	tests := []struct {
		name  string
		yaml  string
		check func(*Snapshot) bool // for valid files
		errs  []wantIssue          // for invalid ones
	}{
		{name: "mode simple", yaml: "mode: simple\n" + one, check: func(s *Snapshot) bool { return s.Mode == ModeSimple }},
		{name: "mode advanced", yaml: "mode: advanced\n" + one, check: func(s *Snapshot) bool { return s.Mode == ModeAdvanced }},
		{name: "mode quoted", yaml: "mode: \"advanced\"\n" + one, check: func(s *Snapshot) bool { return s.Mode == ModeAdvanced }},
		{name: "mode unknown", yaml: "mode: expert\n" + one, errs: []wantIssue{{`mode must be one of simple, advanced; got "expert"`, 1}}},
		{name: "mode wrong case", yaml: "mode: Simple\n" + one, errs: []wantIssue{{`mode must be one of simple, advanced`, 1}}},
		{name: "mode number", yaml: "mode: 1\n" + one, errs: []wantIssue{{"mode must be one of simple, advanced, got the integer 1", 1}}},
		{name: "mode null", yaml: "mode:\n" + one, errs: []wantIssue{{"mode has no value", 1}}},

		{name: "port", yaml: "port: 8080\n" + one, check: func(s *Snapshot) bool { return s.Port == 8080 }},
		{name: "port 1", yaml: "port: 1\n" + one, check: func(s *Snapshot) bool { return s.Port == 1 }},
		{name: "port 65535", yaml: "port: 65535\n" + one, check: func(s *Snapshot) bool { return s.Port == 65535 }},
		{name: "port hex", yaml: "port: 0x1F90\n" + one, check: func(s *Snapshot) bool { return s.Port == 8080 }},
		{name: "port 0", yaml: "port: 0\n" + one, errs: []wantIssue{{"port must be an integer from 1 to 65535, got 0", 1}}},
		{name: "port 65536", yaml: "port: 65536\n" + one, errs: []wantIssue{{"got 65536", 1}}},
		{name: "port negative", yaml: "port: -1\n" + one, errs: []wantIssue{{"got -1", 1}}},
		{name: "port string", yaml: "port: \"9295\"\n" + one, errs: []wantIssue{{`port must be an integer from 1 to 65535, got the string "9295"`, 1}}},
		{name: "port float", yaml: "port: 80.5\n" + one, errs: []wantIssue{{"got the number 80.5", 1}}},
		{name: "port huge", yaml: "port: 99999999999999999999999\n" + one, errs: []wantIssue{{"got the number 99999999999999999999999", 1}}},
		{name: "port int64 overflow", yaml: "port: 18446744073709551615\n" + one, errs: []wantIssue{{"out of range", 1}}},
		{name: "port leading zero", yaml: "port: 08080\n" + one, errs: []wantIssue{{"without leading zeros", 1}}},
		{name: "port list", yaml: "port: [1, 2]\n" + one, errs: []wantIssue{{"port must be an integer from 1 to 65535, got a list", 1}}},
		{name: "port map", yaml: "port: {a: 1}\n" + one, errs: []wantIssue{{"got a mapping", 1}}},
		{name: "port bool", yaml: "port: true\n" + one, errs: []wantIssue{{"got the boolean true", 1}}},
		{name: "port null", yaml: "port: ~\n" + one, errs: []wantIssue{{"port has no value", 1}}},
		{name: "port value on next line", yaml: "port:\n  0\n" + one, errs: []wantIssue{{"port must be", 2}}},

		{name: "bind ipv4", yaml: "bind_address: 127.0.0.1\n" + one, check: func(s *Snapshot) bool { return s.BindAddress == "127.0.0.1" && len(s.Warnings) == 0 }},
		{name: "bind ipv6", yaml: "bind_address: \"::1\"\n" + one, check: func(s *Snapshot) bool { return s.BindAddress == "::1" && s.ListenAddress() == "[::1]:9295" }},
		{name: "bind ipv6 brackets", yaml: "bind_address: \"[::1]\"\n" + one, check: func(s *Snapshot) bool { return s.BindAddress == "::1" }},
		{name: "bind hostname", yaml: "bind_address: localhost\n" + one, check: func(s *Snapshot) bool { return s.BindAddress == "localhost" }},
		{name: "bind fqdn trailing dot", yaml: "bind_address: lb-1.example.internal.\n" + one, check: func(s *Snapshot) bool { return s.BindAddress == "lb-1.example.internal." }},
		{name: "bind empty", yaml: "bind_address: \"\"\n" + one, errs: []wantIssue{{"bind_address must not be empty", 1}}},
		{name: "bind with port", yaml: "bind_address: 127.0.0.1:80\n" + one, errs: []wantIssue{{"must not include a port", 1}}},
		{name: "bind bad ipv4", yaml: "bind_address: 256.1.1.1\n" + one, errs: []wantIssue{{"is not a valid IPv4 address", 1}}},
		{name: "bind bad ipv6", yaml: "bind_address: \"::zz\"\n" + one, errs: []wantIssue{{"is not a valid IPv6 address", 1}}},
		{name: "bind spaces", yaml: "bind_address: \"a b\"\n" + one, errs: []wantIssue{{"is not a valid IP address or host name", 1}}},
		{name: "bind url", yaml: "bind_address: http://x\n" + one, errs: []wantIssue{{"not a URL", 1}}},
		{name: "bind label too long", yaml: "bind_address: " + strings.Repeat("a", 64) + ".com\n" + one, errs: []wantIssue{{"is not a valid IP address or host name", 1}}},
		{name: "bind leading hyphen", yaml: "bind_address: -a.com\n" + one, errs: []wantIssue{{"is not a valid IP address or host name", 1}}},
		{name: "bind number", yaml: "bind_address: 5\n" + one, errs: []wantIssue{{"bind_address must be an IP address or host name, got the integer 5", 1}}},

		{name: "method round_robin", yaml: "method: round_robin\n" + one, check: func(s *Snapshot) bool { return s.Method == RoundRobin }},
		{name: "method least_connections", yaml: "method: least_connections\n" + one, check: func(s *Snapshot) bool { return s.Method == LeastConnections }},
		{name: "method random_two", yaml: "method: random_two\n" + one, check: func(s *Snapshot) bool { return s.Method == RandomTwo }},
		{name: "method source_hash", yaml: "method: source_hash\n" + one, check: func(s *Snapshot) bool { return s.Method == SourceHash }},
		{name: "method unknown", yaml: "method: leastconn\n" + one, errs: []wantIssue{{`method must be one of round_robin, least_connections, random_two, source_hash; got "leastconn"`, 1}}},

		{name: "log debug", yaml: "log_level: debug\n" + one, check: func(s *Snapshot) bool { return s.LogLevel == slog.LevelDebug }},
		{name: "log info", yaml: "log_level: info\n" + one, check: func(s *Snapshot) bool { return s.LogLevel == slog.LevelInfo }},
		{name: "log warn", yaml: "log_level: warn\n" + one, check: func(s *Snapshot) bool { return s.LogLevel == slog.LevelWarn }},
		{name: "log error", yaml: "log_level: error\n" + one, check: func(s *Snapshot) bool { return s.LogLevel == slog.LevelError }},
		{name: "log upper case (the original accepted it)", yaml: "log_level: WARN\n" + one, check: func(s *Snapshot) bool { return s.LogLevel == slog.LevelWarn }},
		{name: "log trace", yaml: "log_level: trace\n" + one, errs: []wantIssue{{`log_level must be one of debug, info, warn, error; got "trace"`, 1}}},
		{name: "log warning", yaml: "log_level: warning\n" + one, errs: []wantIssue{{`got "warning"`, 1}}},

		{name: "unknown top key", yaml: "prot: 80\n" + one, errs: []wantIssue{{`unknown key "prot"; did you mean "port"?`, 1}}},
		{name: "unknown top key far from any", yaml: "frontend: x\n" + one, errs: []wantIssue{{`unknown key "frontend"`, 1}}},
		{name: "duplicate key", yaml: "port: 1\nport: 2\n" + one, errs: []wantIssue{{"port is set twice (first on line 1)", 2}}},
		{name: "non-scalar key", yaml: "? [a]\n: 1\n" + one, errs: []wantIssue{{"keys must be plain names, got a list", 1}}},
		{name: "integer key", yaml: "1: x\n" + one, errs: []wantIssue{{`unknown key "1"`, 1}}},
		{name: "null key", yaml: "~: x\n" + one, errs: []wantIssue{{"keys must be plain names, got no value", 1}}},
		{name: "merge key", yaml: "base: &b {port: 1}\n" + one, errs: []wantIssue{{`unknown key "base"`, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.errs == nil {
				if s := mustParse(t, tt.yaml); !tt.check(s) {
					t.Errorf("snapshot %+v does not pass the check", s)
				}
				return
			}
			matchIssues(t, "errors", parseErr(t, tt.yaml).Issues, tt.errs)
		})
	}
}

func TestParseBackends(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []Backend
		errs []wantIssue
	}{
		{name: "two", yaml: "backends:\n  - host: 10.0.0.1\n    port: 80\n  - host: app-b.internal\n    port: 443\n    weight: 3\n",
			want: []Backend{{Host: "10.0.0.1", Port: 80, Weight: 1, Line: 2}, {Host: "app-b.internal", Port: 443, Weight: 3, Line: 4}}},
		{name: "flow style", yaml: "backends: [{host: 127.0.0.1, port: 9000}, {host: 127.0.0.1, port: 9100}]\n",
			want: []Backend{{Host: "127.0.0.1", Port: 9000, Weight: 1, Line: 1}, {Host: "127.0.0.1", Port: 9100, Weight: 1, Line: 1}}},
		{name: "ipv6 brackets removed", yaml: "backends:\n  - host: \"[::1]\"\n    port: 9000\n",
			want: []Backend{{Host: "::1", Port: 9000, Weight: 1, Line: 2}}},
		{name: "weight bounds", yaml: "backends:\n  - {host: a, port: 1, weight: 1}\n  - {host: b, port: 1, weight: 256}\n",
			want: []Backend{{Host: "a", Port: 1, Weight: 1, Line: 2}, {Host: "b", Port: 1, Weight: 256, Line: 3}}},
		{name: "anchors and merge keys", yaml: "backends:\n  - &a {host: a, port: 80, weight: 2}\n  - <<: *a\n    host: b\n",
			want: []Backend{{Host: "a", Port: 80, Weight: 2, Line: 2}, {Host: "b", Port: 80, Weight: 2, Line: 3}}},
		{name: "merge list, first wins", yaml: "backends:\n  - &a {host: a, port: 80}\n  - &w {host: w, port: 81, weight: 5}\n  - <<: [*a, *w]\n    port: 82\n",
			want: []Backend{{Host: "a", Port: 80, Weight: 1, Line: 2}, {Host: "w", Port: 81, Weight: 5, Line: 3}, {Host: "a", Port: 82, Weight: 5, Line: 4}}},

		{name: "missing", yaml: "port: 80\n", errs: []wantIssue{{"backends is missing", 0}}},
		{name: "empty list", yaml: "backends: []\n", errs: []wantIssue{{"backends is empty", 1}}},
		{name: "null", yaml: "backends:\n", errs: []wantIssue{{"backends is empty", 1}}},
		{name: "not a list", yaml: "backends: 127.0.0.1:9000\n", errs: []wantIssue{{"backends must be a list of {host, port} entries, got the string", 1}}},
		{name: "entry is a string", yaml: "backends:\n  - 127.0.0.1:9000\n", errs: []wantIssue{{"backends[0] must be a mapping with host and port, got the string \"127.0.0.1:9000\" (write it as host: and port:", 2}}},
		{name: "no host", yaml: "backends:\n  - port: 80\n", errs: []wantIssue{{"backends[0] has no host", 2}}},
		{name: "no port", yaml: "backends:\n  - host: a\n", errs: []wantIssue{{"backends[0] has no port", 2}}},
		{name: "empty host", yaml: "backends:\n  - host: \"\"\n    port: 80\n", errs: []wantIssue{{"backends[0].host must not be empty", 2}}},
		{name: "host null", yaml: "backends:\n  - host:\n    port: 80\n", errs: []wantIssue{{"backends[0].host has no value", 2}}},
		{name: "host with port", yaml: "backends:\n  - host: a:80\n    port: 80\n", errs: []wantIssue{{"backends[0].host \"a:80\" must not include a port", 2}}},
		{name: "port 0", yaml: "backends:\n  - host: a\n    port: 0\n", errs: []wantIssue{{"backends[0].port must be an integer from 1 to 65535, got 0", 3}}},
		{name: "port string", yaml: "backends:\n  - host: a\n    port: http\n", errs: []wantIssue{{`backends[0].port must be an integer from 1 to 65535, got the string "http"`, 3}}},
		{name: "weight 0", yaml: "backends:\n  - {host: a, port: 1, weight: 0}\n", errs: []wantIssue{{"backends[0].weight must be an integer from 1 to 256, got 0", 2}}},
		{name: "weight 257", yaml: "backends:\n  - {host: a, port: 1, weight: 257}\n", errs: []wantIssue{{"got 257", 2}}},
		{name: "weight float", yaml: "backends:\n  - {host: a, port: 1, weight: 1.5}\n", errs: []wantIssue{{"got the number 1.5", 2}}},
		{name: "unknown key", yaml: "backends:\n  - host: a\n    port: 1\n    wieght: 2\n", errs: []wantIssue{{`backends[0]: unknown key "wieght"; did you mean "weight"?`, 4}}},
		{name: "duplicate key in entry", yaml: "backends:\n  - host: a\n    host: b\n    port: 1\n", errs: []wantIssue{{"backends[0].host is set twice (first on line 2)", 3}}},
		{name: "duplicate exact", yaml: "backends:\n  - {host: a, port: 1}\n  - {host: a, port: 1}\n", errs: []wantIssue{{"backends[1] a:1 is a duplicate of the backend on line 2", 3}}},
		{name: "duplicate case", yaml: "backends:\n  - {host: App.Internal, port: 1}\n  - {host: app.internal, port: 1}\n", errs: []wantIssue{{"duplicate of the backend on line 2", 3}}},
		{name: "duplicate ipv6 spellings", yaml: "backends:\n  - {host: \"[::1]\", port: 1}\n  - {host: \"::1\", port: 1}\n  - {host: \"0:0::1\", port: 1}\n",
			errs: []wantIssue{{"backends[1] [::1]:1 is a duplicate of the backend on line 2", 3}, {"backends[2] [0:0::1]:1 is a duplicate of the backend on line 2", 4}}},
		{name: "duplicate mapped ipv4", yaml: "backends:\n  - {host: 127.0.0.1, port: 1}\n  - {host: \"::ffff:127.0.0.1\", port: 1}\n", errs: []wantIssue{{"duplicate", 3}}},
		{name: "every broken entry reported", yaml: "backends:\n  - {host: a, port: 0}\n  - {host: \"\", port: 1}\n  - {port: 2}\n  - 5\n",
			errs: []wantIssue{{"backends[0].port", 2}, {"backends[1].host must not be empty", 3}, {"backends[2] has no host", 4}, {"backends[3] must be a mapping", 5}}},
		{name: "merge of a scalar", yaml: "backends:\n  - <<: 5\n    host: a\n    port: 1\n", errs: []wantIssue{{"<< must merge a mapping or a list of mappings, got the integer 5", 2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.errs != nil {
				ce := parseErr(t, tt.yaml)
				matchIssues(t, "errors", ce.Issues, tt.errs)
				return
			}
			s := mustParse(t, tt.yaml)
			if len(s.Backends) != len(tt.want) {
				t.Fatalf("backends = %+v, want %+v", s.Backends, tt.want)
			}
			for i := range tt.want {
				if s.Backends[i] != tt.want[i] {
					t.Errorf("backends[%d] = %+v, want %+v", i, s.Backends[i], tt.want[i])
				}
			}
		})
	}
}

func TestParseRuntimeRules(t *testing.T) {
	adv := "mode: advanced\nbind_address: 127.0.0.1\n" + one + "runtime:\n" // runtime keys start on line 7
	tests := []struct {
		key   string
		value string
		ok    bool
		check func(Runtime) bool // when ok
		sub   string             // error substring when !ok
	}{
		{"health_check_interval_ms", "250", true, func(r Runtime) bool { return r.HealthCheckInterval == 250*time.Millisecond }, ""},
		{"health_check_interval_ms", "0", false, nil, "runtime.health_check_interval_ms must be an integer from 1 to 2592000000 (milliseconds), got 0"},
		{"health_check_interval_ms", "2592000001", false, nil, "got 2592000001"},
		{"health_check_interval_ms", "\"500\"", false, nil, "got the string \"500\""},
		{"health_check_interval_ms", "1.5", false, nil, "got the number 1.5"},
		{"health_check_timeout_ms", "900", true, func(r Runtime) bool { return r.HealthCheckTimeout == 900*time.Millisecond }, ""},
		{"health_check_timeout_ms", "-5", false, nil, "got -5"},
		{"health_check_fail_threshold", "4", true, func(r Runtime) bool { return r.HealthCheckFailThreshold == 4 }, ""},
		{"health_check_fail_threshold", "0", false, nil, "runtime.health_check_fail_threshold must be an integer from 1 to 1000000, got 0"},
		{"health_check_success_threshold", "3", true, func(r Runtime) bool { return r.HealthCheckSuccessThreshold == 3 }, ""},
		{"health_check_success_threshold", "0", false, nil, "runtime.health_check_success_threshold must be"},
		{"backend_connect_timeout_ms", "400", true, func(r Runtime) bool { return r.BackendConnectTimeout == 400*time.Millisecond }, ""},
		{"backend_connect_timeout_ms", "0", false, nil, "runtime.backend_connect_timeout_ms must be"},
		{"failover_backoff_initial_ms", "100", true, func(r Runtime) bool { return r.FailoverBackoffInitial == 100*time.Millisecond }, ""},
		{"failover_backoff_initial_ms", "0", false, nil, "runtime.failover_backoff_initial_ms must be"},
		{"failover_backoff_initial_ms", "6000", false, nil, "runtime.failover_backoff_max_ms (5000, auto-tuned) must be >= failover_backoff_initial_ms (6000)"},
		{"failover_backoff_max_ms", "200", true, func(r Runtime) bool { return r.FailoverBackoffMax == 200*time.Millisecond }, ""}, // = auto-tuned initial
		{"failover_backoff_max_ms", "199", false, nil, "runtime.failover_backoff_max_ms (199) must be >= failover_backoff_initial_ms (200, auto-tuned)"},
		{"failover_backoff_max_ms", "0", false, nil, "runtime.failover_backoff_max_ms must be an integer from 1"},
		{"backend_cooldown_ms", "0", true, func(r Runtime) bool { return r.BackendCooldown == 0 }, ""},
		{"backend_cooldown_ms", "-1", false, nil, "runtime.backend_cooldown_ms must be an integer from 0"},
		{"protection_trigger_threshold", "20", true, func(r Runtime) bool { return r.ProtectionTriggerThreshold == 20 }, ""},
		{"protection_trigger_threshold", "0", false, nil, "runtime.protection_trigger_threshold must be"},
		{"protection_window_ms", "10000", true, func(r Runtime) bool { return r.ProtectionWindow == 10*time.Second }, ""},
		{"protection_window_ms", "0", false, nil, "runtime.protection_window_ms must be"},
		{"protection_stable_success_threshold", "5", true, func(r Runtime) bool { return r.ProtectionStableSuccessThreshold == 5 }, ""},
		{"protection_stable_success_threshold", "0", false, nil, "runtime.protection_stable_success_threshold must be"},
		{"max_concurrent_connections", "20000", true, func(r Runtime) bool { return r.MaxConcurrentConnections == 20000 }, ""},
		{"max_concurrent_connections", "0", false, nil, "runtime.max_concurrent_connections must be an integer from 1 to 10000000, got 0"},
		{"max_concurrent_connections", "10000001", false, nil, "got 10000001"},
		{"connection_idle_timeout_ms", "600000", true, func(r Runtime) bool { return r.ConnectionIdleTimeout == 10*time.Minute }, ""},
		{"connection_idle_timeout_ms", "0", false, nil, "runtime.connection_idle_timeout_ms must be"},
		{"overload_policy", "reject", true, func(r Runtime) bool { return r.OverloadPolicy == "reject" }, ""},
		{"overload_policy", "queue", false, nil, `runtime.overload_policy must be one of reject; got "queue"`},
		{"tcp_backlog", "0", true, func(r Runtime) bool { return r.TCPBacklog == 0 }, ""},
		{"tcp_backlog", "2048", true, func(r Runtime) bool { return r.TCPBacklog == 2048 }, ""},
		{"tcp_backlog", "65535", true, func(r Runtime) bool { return r.TCPBacklog == 65535 }, ""},
		{"tcp_backlog", "65536", false, nil, "runtime.tcp_backlog must be an integer from 0 to 65535, got 65536"},
		{"tcp_backlog", "-1", false, nil, "got -1"},
		{"drain_timeout_ms", "0", true, func(r Runtime) bool { return r.DrainTimeout == 0 }, ""},
		{"drain_timeout_ms", "5000", true, func(r Runtime) bool { return r.DrainTimeout == 5*time.Second }, ""},
		{"drain_timeout_ms", "-1", false, nil, "runtime.drain_timeout_ms must be an integer from 0"},
		{"engine", "auto", true, func(r Runtime) bool { return r.Engine == EngineAuto }, ""},
		{"engine", "std", true, func(r Runtime) bool { return r.Engine == EngineStd }, ""},
		{"engine", "gnet", true, func(r Runtime) bool { return r.Engine == EngineGnet }, ""}, // tests run on Linux; see TestParseGnetOffLinux
		{"engine", "epoll", false, nil, `runtime.engine must be one of auto, gnet, std; got "epoll"`},
		{"proxy_protocol", "off", true, func(r Runtime) bool { return r.ProxyProtocol == ProxyOff }, ""},
		{"proxy_protocol", "v1", true, func(r Runtime) bool { return r.ProxyProtocol == ProxyV1 }, ""},
		{"proxy_protocol", "v2", true, func(r Runtime) bool { return r.ProxyProtocol == ProxyV2 }, ""},
		{"proxy_protocol", "on", false, nil, `runtime.proxy_protocol must be one of off, v1, v2; got "on"`},
		{"proxy_protocol", "false", false, nil, "runtime.proxy_protocol must be one of off, v1, v2, got the boolean false"},
		{"metrics_address", "127.0.0.1:9100", true, func(r Runtime) bool { return r.MetricsAddress == "127.0.0.1:9100" }, ""},
		{"metrics_address", "\"[::1]:9100\"", true, func(r Runtime) bool { return r.MetricsAddress == "[::1]:9100" }, ""},
		{"metrics_address", "localhost:09100", true, func(r Runtime) bool { return r.MetricsAddress == "localhost:9100" }, ""},
		{"metrics_address", "\"\"", true, func(r Runtime) bool { return r.MetricsAddress == "" }, ""},
		{"metrics_address", "localhost", false, nil, `runtime.metrics_address must be host:port (for example 127.0.0.1:9100), got "localhost"`},
		{"metrics_address", "127.0.0.1:http", false, nil, `runtime.metrics_address port must be a number from 1 to 65535, got "http"`},
		{"metrics_address", "127.0.0.1:0", false, nil, "port must be a number from 1 to 65535"},
		{"metrics_address", "\"bad host:9100\"", false, nil, `runtime.metrics_address host "bad host" is not a valid IP address or host name`},
		{"metrics_address", "9100", false, nil, "got the integer 9100"},
		{"access_log", "true", true, func(r Runtime) bool { return r.AccessLog }, ""},
		{"access_log", "false", true, func(r Runtime) bool { return !r.AccessLog }, ""},
		{"access_log", "yes", false, nil, `runtime.access_log must be true or false, got the string "yes"`},
		{"access_log", "1", false, nil, "got the integer 1"},
		{"access_log", "", false, nil, "runtime.access_log has no value"},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			y := adv + "  " + tt.key + ": " + tt.value + "\n"
			if !tt.ok {
				matchIssues(t, "errors", parseErr(t, y).Issues, []wantIssue{{tt.sub, 7}})
				return
			}
			s := mustParse(t, y)
			if !tt.check(s.Runtime) {
				t.Errorf("runtime %+v does not pass the check", s.Runtime)
			}
			// Every other key keeps its auto-tuned value.
			want := Profile(1)
			got := s.Runtime
			for _, k := range runtimeKeys {
				if k.name == tt.key {
					continue
				}
				if a, b := k.format(&got), k.format(&want); a != b {
					t.Errorf("%s = %s, want the auto-tuned %s", k.name, a, b)
				}
			}
		})
	}
}

func TestParseRuntimeStructure(t *testing.T) {
	base := "mode: advanced\nbind_address: 127.0.0.1\n" + one
	tests := []struct {
		name string
		yaml string
		errs []wantIssue
		warn []wantIssue
	}{
		{name: "unknown key", yaml: base + "runtime:\n  helth_check_interval_ms: 5\n", errs: []wantIssue{{`runtime: unknown key "helth_check_interval_ms"; did you mean "health_check_interval_ms"?`, 7}}},
		{name: "not a mapping", yaml: base + "runtime: [1]\n", errs: []wantIssue{{"runtime must be a mapping of keys, got a list", 6}}},
		{name: "null is no overrides", yaml: base + "runtime:\n"},
		{name: "empty is no overrides", yaml: base + "runtime: {}\n"},
		{name: "duplicate key", yaml: base + "runtime:\n  tcp_backlog: 1\n  tcp_backlog: 2\n", errs: []wantIssue{{"runtime.tcp_backlog is set twice (first on line 7)", 8}}},
		{name: "every error collected", yaml: base + "runtime:\n  tcp_backlog: -1\n  engine: x\n  nope: 1\n  access_log: 3\n",
			errs: []wantIssue{{"runtime.tcp_backlog", 7}, {"runtime.engine", 8}, {`unknown key "nope"`, 9}, {"runtime.access_log", 10}}},
		{name: "timeout twice the interval", yaml: base + "runtime:\n  health_check_interval_ms: 100\n  health_check_timeout_ms: 200\n",
			warn: []wantIssue{{"runtime.health_check_timeout_ms (200) is at least twice health_check_interval_ms (100)", 8}}},
		{name: "timeout twice the auto-tuned interval", yaml: base + "runtime:\n  health_check_timeout_ms: 1000\n",
			warn: []wantIssue{{"runtime.health_check_timeout_ms (1000) is at least twice health_check_interval_ms (500, auto-tuned)", 7}}},
		{name: "timeout a bit above the interval is fine", yaml: base + "runtime:\n  health_check_interval_ms: 500\n  health_check_timeout_ms: 800\n"},
		{name: "cooldown hides backoff", yaml: base + "runtime:\n  backend_cooldown_ms: 5000\n",
			warn: []wantIssue{{"runtime.backend_cooldown_ms (5000) is not below failover_backoff_max_ms (5000, auto-tuned)", 7}}},
		{name: "metrics on all interfaces", yaml: base + "runtime:\n  metrics_address: 0.0.0.0:9100\n",
			warn: []wantIssue{{"runtime.metrics_address 0.0.0.0:9100 listens on all interfaces", 7}}},
		{name: "metrics empty host", yaml: base + "runtime:\n  metrics_address: :9100\n",
			warn: []wantIssue{{"runtime.metrics_address :9100 listens on all interfaces", 7}}},
		{name: "metrics on the listen address", yaml: base + "runtime:\n  metrics_address: 127.0.0.1:9295\n",
			errs: []wantIssue{{"runtime.metrics_address 127.0.0.1:9295 collides with the listen address 127.0.0.1:9295", 7}}},
		{name: "metrics on another port", yaml: base + "runtime:\n  metrics_address: 127.0.0.1:9296\n"},
		{name: "metrics on a backend's address", yaml: base + "runtime:\n  metrics_address: 127.0.0.1:9000\n",
			warn: []wantIssue{{"backends[0] 127.0.0.1:9000 is bal's own metrics_address 127.0.0.1:9000", 4}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.errs != nil {
				matchIssues(t, "errors", parseErr(t, tt.yaml).Issues, tt.errs)
				return
			}
			s := mustParse(t, tt.yaml)
			matchIssues(t, "warnings", s.Warnings, tt.warn)
		})
	}
}

func TestParseGnetOffLinux(t *testing.T) {
	defer func(g string) { goos = g }(goos)
	goos = "darwin"
	y := "mode: advanced\nbind_address: 127.0.0.1\n" + one + "runtime:\n  engine: gnet\n"
	matchIssues(t, "errors", parseErr(t, y).Issues, []wantIssue{{"runtime.engine gnet needs Linux (this is darwin); use auto or std", 7}})
	for _, e := range []string{"auto", "std"} {
		mustParse(t, "mode: advanced\nbind_address: 127.0.0.1\n"+one+"runtime:\n  engine: "+e+"\n")
	}
	goos = "linux"
	mustParse(t, y)
}

func TestParseSimpleModeIgnoresRuntime(t *testing.T) {
	y := "bind_address: 127.0.0.1\n" + one + "runtime:\n  health_check_interval_ms: 100\n  tcp_backlog: 10\n"
	s := mustParse(t, y)
	if s.Runtime != Profile(1) {
		t.Errorf("simple mode runtime = %+v, want Profile(1)", s.Runtime)
	}
	matchIssues(t, "warnings", s.Warnings, []wantIssue{{"runtime is ignored in simple mode; set mode: advanced", 5}})

	// The ignored block is still validated: a file does not turn invalid
	// when its mode changes.
	matchIssues(t, "errors", parseErr(t, y+"  bogus: 1\n").Issues, []wantIssue{{`runtime: unknown key "bogus"`, 8}})

	// A broken mode does not add a misleading "ignored" warning.
	ce := parseErr(t, "mode: advnced\n"+y)
	matchIssues(t, "errors", ce.Issues, []wantIssue{{"mode must be one of", 1}})
	matchIssues(t, "warnings", ce.Warnings, nil)
}

func TestParseProfiles(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	tests := []struct {
		backends                    int
		interval, timeout           time.Duration
		fail, success               int
		connect, initial, max, cool time.Duration
		trigger, stable, maxConns   int
	}{
		{1, ms(500), ms(800), 2, 1, ms(800), ms(200), ms(5000), ms(500), 10, 12, 4000},
		{2, ms(500), ms(800), 2, 1, ms(800), ms(200), ms(5000), ms(500), 10, 12, 4000},
		{3, ms(700), ms(1000), 2, 1, ms(1000), ms(300), ms(7000), ms(700), 12, 14, 8000},
		{5, ms(700), ms(1000), 2, 1, ms(1000), ms(300), ms(7000), ms(700), 12, 14, 8000},
		{6, ms(1000), ms(1200), 3, 2, ms(1200), ms(500), ms(10000), ms(1000), 14, 16, 12000},
		{9, ms(1000), ms(1200), 3, 2, ms(1200), ms(500), ms(10000), ms(1000), 14, 16, 12000},
	}
	for _, tt := range tests {
		for _, mode := range []string{"simple", "advanced"} {
			var b strings.Builder
			b.WriteString("mode: " + mode + "\nbind_address: 127.0.0.1\nbackends:\n")
			for i := 0; i < tt.backends; i++ {
				b.WriteString("  - {host: 127.0.0.1, port: " + strconv.Itoa(9000+i) + "}\n")
			}
			r := mustParse(t, b.String()).Runtime
			if r.HealthCheckInterval != tt.interval || r.HealthCheckTimeout != tt.timeout ||
				r.HealthCheckFailThreshold != tt.fail || r.HealthCheckSuccessThreshold != tt.success ||
				r.BackendConnectTimeout != tt.connect || r.FailoverBackoffInitial != tt.initial ||
				r.FailoverBackoffMax != tt.max || r.BackendCooldown != tt.cool ||
				r.ProtectionTriggerThreshold != tt.trigger || r.ProtectionStableSuccessThreshold != tt.stable ||
				r.MaxConcurrentConnections != tt.maxConns {
				t.Errorf("%d backends, %s: runtime %+v does not match the profile row %+v", tt.backends, mode, r, tt)
			}
			// All profiles share these (docs/configuration.md#auto-tuned-profile and the runtime key defaults).
			if r.ProtectionWindow != ms(30000) || r.ConnectionIdleTimeout != ms(120000) || r.OverloadPolicy != "reject" ||
				r.DrainTimeout != ms(30000) || r.TCPBacklog != 0 || r.Engine != EngineAuto || r.ProxyProtocol != ProxyOff ||
				r.MetricsAddress != "" || r.AccessLog {
				t.Errorf("%d backends, %s: shared defaults wrong: %+v", tt.backends, mode, r)
			}
		}
	}
}

// TestParseAdvancedPartialOverride: keys left out keep the auto-tuned value
// of the profile for this many backends (the original fell back to a static
// aggressive set instead).
func TestParseAdvancedPartialOverride(t *testing.T) {
	y := `mode: advanced
bind_address: 127.0.0.1
backends:
  - {host: a, port: 1}
  - {host: b, port: 1}
  - {host: c, port: 1}
runtime:
  health_check_timeout_ms: 900
  tcp_backlog: 1024
  access_log: true
`
	s := mustParse(t, y)
	want := Profile(3)
	want.HealthCheckTimeout = 900 * time.Millisecond
	want.TCPBacklog = 1024
	want.AccessLog = true
	if s.Runtime != want {
		t.Errorf("runtime = %+v\nwant      %+v", s.Runtime, want)
	}
	if len(s.Warnings) != 0 {
		t.Errorf("warnings = %v", s.Warnings)
	}
}

func TestParseWarnings(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []wantIssue
	}{
		{"bind 0.0.0.0", "bind_address: 0.0.0.0\n" + one, []wantIssue{{"bind_address is 0.0.0.0 (listens on all interfaces)", 1}}},
		{"bind ::", "bind_address: \"::\"\n" + one, []wantIssue{{"bind_address is :: (listens on all interfaces)", 1}}},
		{"bind [::]", "bind_address: \"[::]\"\n" + one, []wantIssue{{"bind_address is :: (listens on all interfaces)", 1}}},
		{"bind default", one, []wantIssue{{"the default when bind_address is not set", 0}}},
		{"bind loopback", "bind_address: 127.0.0.1\n" + one, nil},
		{"runtime in simple mode", "bind_address: 127.0.0.1\n" + one + "runtime: {}\n", []wantIssue{{"runtime is ignored in simple mode; set mode: advanced", 5}}},
		{"advanced without runtime", "mode: advanced\nbind_address: 127.0.0.1\n" + one, nil},
		{"backend is bal itself", "bind_address: 127.0.0.1\nbackends:\n  - {host: 127.0.0.1, port: 9295}\n",
			[]wantIssue{{"backends[0] 127.0.0.1:9295 is bal's own listen address 127.0.0.1:9295", 3}}},
		{"backend loopback while bal on all interfaces", "bind_address: 0.0.0.0\nport: 80\nbackends:\n  - {host: localhost, port: 80}\n",
			[]wantIssue{{"bind_address is 0.0.0.0", 1}, {"backends[0] localhost:80 is bal's own listen address", 4}}},
		{"backend same port elsewhere", "bind_address: 127.0.0.1\nbackends:\n  - {host: 10.1.2.3, port: 9295}\n", nil},
		{"backend unspecified", "bind_address: 127.0.0.1\nbackends:\n  - {host: 0.0.0.0, port: 80}\n", []wantIssue{{"backends[0] host 0.0.0.0 is the unspecified address", 3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			matchIssues(t, "warnings", mustParse(t, tt.yaml).Warnings, tt.want)
		})
	}
}

func TestParseDocument(t *testing.T) {
	tests := []struct {
		name string
		data string
		want []wantIssue
	}{
		{"empty", "", []wantIssue{{"the file is empty", 0}}},
		{"only comments", "# nothing\n\n", []wantIssue{{"the file is empty", 0}}},
		{"null document", "---\n~\n", []wantIssue{{"the file is empty", 0}}},
		{"list at top", "- a\n- b\n", []wantIssue{{"the top level must be a mapping of keys (mode, port, backends, ...), got a list", 1}}},
		{"scalar at top", "hello\n", []wantIssue{{"got the string \"hello\"", 1}}},
		{"syntax error", "port: 1\nbackends: [\n", []wantIssue{{"invalid YAML:", 2}}},
		{"bad indentation", "port: 1\n  backends: x\n", []wantIssue{{"invalid YAML: mapping values are not allowed in this context", 2}}},
		{"tab indentation", "backends:\n\t- host: a\n", []wantIssue{{"a tab in the indentation", 2}}},
		{"two documents", "port: 1\n---\nport: 2\n", []wantIssue{{"more than one YAML document", 2}}},
		{"broken second document", "port: 1\n---\n[\n", []wantIssue{{"invalid YAML", 0}}},
		{"unknown alias", "port: *nope\n", []wantIssue{{`invalid YAML: unknown anchor 'nope' referenced`, 1}}},
		{"too large", "# " + strings.Repeat("x", MaxFileSize) + "\n", []wantIssue{{"a config file may be at most 1048576", 0}}},
		{"not utf-8", "port: \xff\xfe\n", []wantIssue{{"invalid YAML", 0}}},
		{"every error collected and sorted", "port: 0\nmethod: x\nfoo: 1\nbackends:\n  - {host: \"\", port: 1}\nlog_level: loud\n",
			[]wantIssue{{"port must be", 1}, {"method must be", 2}, {`unknown key "foo"`, 3}, {"backends[0].host must not be empty", 5}, {"log_level must be", 6}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ce := parseErr(t, tt.data)
			if ce.Path != "t.yaml" {
				t.Errorf("Path = %q", ce.Path)
			}
			if len(ce.Issues) == 0 || len(tt.want) == 0 {
				t.Fatal("no issues")
			}
			// YAML syntax messages are yaml.v3's: check the first issue's
			// start and line, and the whole list for our own messages.
			if tt.want[0].sub == "invalid YAML" || strings.HasPrefix(tt.want[0].sub, "invalid YAML:") && len(tt.want) == 1 {
				if !strings.Contains(ce.Issues[0].Message, tt.want[0].sub) {
					t.Errorf("issue = %v, want %q", ce.Issues[0], tt.want[0].sub)
				}
				if tt.want[0].line != 0 && ce.Issues[0].Line != tt.want[0].line {
					t.Errorf("issue = %v, want line %d", ce.Issues[0], tt.want[0].line)
				}
				return
			}
			matchIssues(t, "errors", ce.Issues, tt.want)
		})
	}
}

func TestParseBOM(t *testing.T) {
	s := mustParse(t, "\ufeffbind_address: 127.0.0.1\n"+one)
	if s.BindAddress != "127.0.0.1" {
		t.Errorf("bind = %q", s.BindAddress)
	}
}

func TestParseRecursiveAnchors(t *testing.T) {
	for _, y := range []string{
		"a: &x {<<: *x}\n" + one,
		"backends: &b [*b]\n",
		"backends:\n  - &e {<<: *e, host: a, port: 1}\n",
	} {
		_, err := Parse([]byte(y), "")
		var ce *Error
		if !errors.As(err, &ce) && err != nil {
			t.Errorf("Parse(%q) error %v is not an *Error", y, err)
		}
	}
}

func TestErrorType(t *testing.T) {
	_, err := Parse([]byte("port: 0\nprot: 1\n"), "/etc/bal/config.yaml")
	var ce *Error
	if !errors.As(err, &ce) || !errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotFound) {
		t.Fatalf("err = %v", err)
	}
	want := `invalid config /etc/bal/config.yaml: line 1: port must be an integer from 1 to 65535, got 0; line 2: unknown key "prot"; did you mean "port"?; backends is missing: list at least one backend as {host, port}`
	if ce.Error() != want {
		t.Errorf("Error() =\n%s\nwant\n%s", ce.Error(), want)
	}
	if ce.Mode != ModeSimple || ce.BackendCount != 0 {
		t.Errorf("meta: mode %q, backends %d", ce.Mode, ce.BackendCount)
	}
	_, err = Parse([]byte("mode: nope\nbackends: [{host: a, port: 0}, {host: b, port: 1}]\n"), "")
	if !errors.As(err, &ce) || ce.Mode != "" || ce.BackendCount != 2 {
		t.Errorf("meta of a broken file: %+v", ce)
	}
	if got := (&Error{Issues: []Issue{{Message: "x"}}}).Error(); got != "invalid config: x" {
		t.Errorf("Error() without path = %q", got)
	}
}

func TestDefaultFileParses(t *testing.T) {
	s := mustParse(t, DefaultFile)
	if len(s.Warnings) != 0 {
		t.Errorf("the default file has warnings (bal check --strict would fail): %v", s.Warnings)
	}
	want := []Backend{{Host: "127.0.0.1", Port: 9000, Weight: 1}, {Host: "127.0.0.1", Port: 9100, Weight: 1}}
	if s.Mode != ModeSimple || s.Port != 9295 || s.BindAddress != "127.0.0.1" || s.Method != RoundRobin || len(s.Backends) != 2 {
		t.Fatalf("default file = %+v", s)
	}
	for i := range want {
		if s.Backends[i].Address() != want[i].Address() || s.Backends[i].Weight != 1 {
			t.Errorf("backend %d = %+v", i, s.Backends[i])
		}
	}
	if !strings.Contains(DefaultFile, "0.0.0.0") {
		t.Error("the default file must tell how to listen on all interfaces")
	}
}

func TestRuntimeValue(t *testing.T) {
	r := Profile(1)
	for key, want := range map[string]string{
		"health_check_interval_ms": "500", "engine": "auto", "access_log": "false", "metrics_address": "", "tcp_backlog": "0",
	} {
		if got, ok := r.Value(key); !ok || got != want {
			t.Errorf("Value(%s) = %q, %v; want %q", key, got, ok, want)
		}
	}
	if _, ok := r.Value("nope"); ok {
		t.Error("Value(nope) is ok")
	}
	// The 20 keys of a one-service bal, and 5 that came with services.
	if n := len(RuntimeKeys()); n != 25 {
		t.Errorf("%d runtime keys, want 25", n)
	}
}
