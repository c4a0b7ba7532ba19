package config

import (
	"strconv"
	"time"

	"github.com/bal-lb/bal/engine/access"
)

// Limits of the runtime: keys beyond the original's (which only asked for
// > 0 or ≥ 0). They keep values in a range where nothing overflows and a typo
// with three extra zeros is caught.
const (
	// MaxDurationMS is the largest duration key: 30 days in milliseconds.
	MaxDurationMS = 30 * 24 * 3600 * 1000
	// MaxThreshold is the largest count threshold.
	MaxThreshold = 1_000_000
	// MaxConnections is the largest max_concurrent_connections.
	MaxConnections = 10_000_000
	// MaxTCPBacklog is the largest tcp_backlog (0 means the kernel's somaxconn).
	MaxTCPBacklog = 65535
)

type rtKind uint8

// Scope says where a runtime key may be set.
type Scope uint8

// Scopes of runtime keys (docs/configuration.md, Runtime keys).
const (
	// ScopeService keys are per service: the top-level runtime: block sets
	// them for every service, a service's runtime: block for that one.
	ScopeService Scope = iota
	// ScopeProcess keys (engine, metrics_address, drain_timeout_ms,
	// access_log) belong to the process: top-level runtime: only.
	ScopeProcess
)

func (s Scope) String() string {
	if s == ScopeProcess {
		return "process"
	}
	return "service"
}

const (
	rtDuration rtKind = iota // integer milliseconds → time.Duration
	rtInt                    // integer → int
	rtEnum                   // string, one of choices
	rtAddress                // "host:port" or "" (off)
	rtBool                   // true/false
)

// runtimeKey describes one key of the runtime: block: its YAML name, kind,
// range, scope, the protocol it applies to and where it lives in Runtime.
// The table drives parsing and Changes; docs/configuration.md (Runtime keys)
// is its reference, and a test in docs/ keeps the two equal.
type runtimeKey struct {
	name     string
	kind     rtKind
	min, max int64
	choices  []string
	scope    Scope
	// proto is the one protocol whose services the key acts on; "" for
	// both. A top-level key of the other protocol leaves a service alone.
	proto Protocol
	field func(r *Runtime) any // pointer to the field: *time.Duration, *int, *string or *bool
}

// appliesTo reports whether the key acts on a service of protocol p.
func (k runtimeKey) appliesTo(p Protocol) bool { return k.proto == "" || k.proto == p }

// copyField sets the key's field of dst to its value in src.
func (k runtimeKey) copyField(dst, src *Runtime) {
	switch d := k.field(dst).(type) {
	case *time.Duration:
		*d = *k.field(src).(*time.Duration)
	case *int:
		*d = *k.field(src).(*int)
	case *string:
		*d = *k.field(src).(*string)
	case *bool:
		*d = *k.field(src).(*bool)
	}
}

var runtimeKeys = []runtimeKey{
	{name: "health_check_interval_ms", kind: rtDuration, min: 1, max: MaxDurationMS, field: func(r *Runtime) any { return &r.HealthCheckInterval }},
	{name: "health_check_timeout_ms", kind: rtDuration, min: 1, max: MaxDurationMS, field: func(r *Runtime) any { return &r.HealthCheckTimeout }},
	{name: "health_check_fail_threshold", kind: rtInt, min: 1, max: MaxThreshold, field: func(r *Runtime) any { return &r.HealthCheckFailThreshold }},
	{name: "health_check_success_threshold", kind: rtInt, min: 1, max: MaxThreshold, field: func(r *Runtime) any { return &r.HealthCheckSuccessThreshold }},
	{name: "backend_connect_timeout_ms", kind: rtDuration, min: 1, max: MaxDurationMS, field: func(r *Runtime) any { return &r.BackendConnectTimeout }},
	{name: "failover_backoff_initial_ms", kind: rtDuration, min: 1, max: MaxDurationMS, field: func(r *Runtime) any { return &r.FailoverBackoffInitial }},
	{name: "failover_backoff_max_ms", kind: rtDuration, min: 1, max: MaxDurationMS, field: func(r *Runtime) any { return &r.FailoverBackoffMax }},
	{name: "backend_cooldown_ms", kind: rtDuration, min: 0, max: MaxDurationMS, field: func(r *Runtime) any { return &r.BackendCooldown }},
	{name: "protection_trigger_threshold", kind: rtInt, min: 1, max: MaxThreshold, field: func(r *Runtime) any { return &r.ProtectionTriggerThreshold }},
	{name: "protection_window_ms", kind: rtDuration, min: 1, max: MaxDurationMS, field: func(r *Runtime) any { return &r.ProtectionWindow }},
	{name: "protection_stable_success_threshold", kind: rtInt, min: 1, max: MaxThreshold, field: func(r *Runtime) any { return &r.ProtectionStableSuccessThreshold }},
	{name: "max_concurrent_connections", kind: rtInt, min: 1, max: MaxConnections, field: func(r *Runtime) any { return &r.MaxConcurrentConnections }},
	{name: "connection_idle_timeout_ms", kind: rtDuration, min: 1, max: MaxDurationMS, proto: TCP, field: func(r *Runtime) any { return &r.ConnectionIdleTimeout }},
	{name: "overload_policy", kind: rtEnum, choices: []string{"reject"}, field: func(r *Runtime) any { return &r.OverloadPolicy }},
	{name: "tcp_backlog", kind: rtInt, min: 0, max: MaxTCPBacklog, proto: TCP, field: func(r *Runtime) any { return &r.TCPBacklog }},
	{name: "drain_timeout_ms", kind: rtDuration, min: 0, max: MaxDurationMS, scope: ScopeProcess, field: func(r *Runtime) any { return &r.DrainTimeout }},
	{name: "engine", kind: rtEnum, choices: []string{EngineAuto, EngineGnet, EngineStd}, scope: ScopeProcess, field: func(r *Runtime) any { return &r.Engine }},
	{name: "proxy_protocol", kind: rtEnum, choices: []string{ProxyOff, ProxyV1, ProxyV2}, proto: TCP, field: func(r *Runtime) any { return &r.ProxyProtocol }},
	{name: "metrics_address", kind: rtAddress, scope: ScopeProcess, field: func(r *Runtime) any { return &r.MetricsAddress }},
	{name: "access_log", kind: rtBool, scope: ScopeProcess, field: func(r *Runtime) any { return &r.AccessLog }},
	{name: "tls_inspect_timeout_ms", kind: rtDuration, min: 1, max: MaxDurationMS, proto: TCP, field: func(r *Runtime) any { return &r.TLSInspectTimeout }},
	{name: "proxy_header_timeout_ms", kind: rtDuration, min: 1, max: MaxDurationMS, proto: TCP, field: func(r *Runtime) any { return &r.ProxyHeaderTimeout }},
	{name: "source_table_size", kind: rtInt, min: 1, max: access.MaxSourceTableSize, field: func(r *Runtime) any { return &r.SourceTableSize }},
	{name: "udp_idle_timeout_ms", kind: rtDuration, min: 1, max: MaxDurationMS, proto: UDP, field: func(r *Runtime) any { return &r.UDPIdleTimeout }},
	{name: "max_udp_flows", kind: rtInt, min: 1, max: MaxConnections, proto: UDP, field: func(r *Runtime) any { return &r.MaxUDPFlows }},
}

// RuntimeKeys lists the names of the runtime: keys in the order of the
// reference table (docs/configuration.md, Runtime keys).
func RuntimeKeys() []string {
	out := make([]string, len(runtimeKeys))
	for i, k := range runtimeKeys {
		out[i] = k.name
	}
	return out
}

// RuntimeKeyScope is a runtime key's scope; ok is false for an unknown key.
func RuntimeKeyScope(key string) (scope Scope, ok bool) {
	k, ok := lookupRuntimeKey(key)
	return k.scope, ok
}

// RuntimeKeyProtocol is the protocol a runtime key acts on ("" for both);
// ok is false for an unknown key.
func RuntimeKeyProtocol(key string) (p Protocol, ok bool) {
	k, ok := lookupRuntimeKey(key)
	return k.proto, ok
}

// Value returns one runtime key as it is written in the config file
// ("500" for 500 ms, "reject", "true", "" for an unset metrics address); ok
// is false for an unknown key.
func (r Runtime) Value(key string) (string, bool) {
	for _, k := range runtimeKeys {
		if k.name == key {
			return k.format(&r), true
		}
	}
	return "", false
}

func (k runtimeKey) format(r *Runtime) string {
	switch v := k.field(r).(type) {
	case *time.Duration:
		return strconv.FormatInt(v.Milliseconds(), 10)
	case *int:
		return strconv.Itoa(*v)
	case *string:
		return *v
	case *bool:
		return strconv.FormatBool(*v)
	}
	return ""
}

func ms(n int64) time.Duration { return time.Duration(n) * time.Millisecond }
