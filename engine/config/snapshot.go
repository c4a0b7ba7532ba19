package config

import (
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Mode is the config mode: simple (runtime auto-tuned) or advanced.
type Mode string

// Modes.
const (
	ModeSimple   Mode = "simple"
	ModeAdvanced Mode = "advanced"
)

// Method is the balancing method (docs/design.md).
type Method string

// Balancing methods.
const (
	RoundRobin       Method = "round_robin"
	LeastConnections Method = "least_connections"
	RandomTwo        Method = "random_two"
	SourceHash       Method = "source_hash"
)

// Engine names for runtime.engine.
const (
	EngineAuto = "auto"
	EngineGnet = "gnet"
	EngineStd  = "std"
)

// PROXY protocol settings for runtime.proxy_protocol.
const (
	ProxyOff = "off"
	ProxyV1  = "v1"
	ProxyV2  = "v2"
)

// Backend is one configured backend.
type Backend struct {
	// Host is the host as configured with IPv6 brackets removed
	// ("::1", "127.0.0.1", "app-a.internal").
	Host   string
	Port   int
	Weight int // 1–256, default 1
	Line   int // line in the file, 0 when unknown
}

// Address is the backend as "host:port" ("[::1]:9000" for IPv6). It is the
// label used in status, logs and metrics.
func (b Backend) Address() string { return net.JoinHostPort(b.Host, strconv.Itoa(b.Port)) }

// Key is the backend's identity across reloads and for duplicate detection:
// the address with the host lowercased and IP literals in canonical form, so
// "[::1]", "::1" and "0:0::1" are the same backend.
func (b Backend) Key() string {
	h := strings.ToLower(b.Host)
	if a, err := netip.ParseAddr(h); err == nil {
		h = a.Unmap().String()
	}
	return net.JoinHostPort(h, strconv.Itoa(b.Port))
}

// Runtime holds the tunables of the `runtime:` block, always fully populated
// (auto-tuned values for keys not set).
type Runtime struct {
	HealthCheckInterval              time.Duration
	HealthCheckTimeout               time.Duration
	HealthCheckFailThreshold         int
	HealthCheckSuccessThreshold      int
	BackendConnectTimeout            time.Duration
	FailoverBackoffInitial           time.Duration
	FailoverBackoffMax               time.Duration
	BackendCooldown                  time.Duration
	ProtectionTriggerThreshold       int
	ProtectionWindow                 time.Duration
	ProtectionStableSuccessThreshold int
	MaxConcurrentConnections         int
	ConnectionIdleTimeout            time.Duration
	OverloadPolicy                   string // "reject"
	TCPBacklog                       int    // 0 = the kernel's somaxconn
	DrainTimeout                     time.Duration
	Engine                           string // auto | gnet | std
	ProxyProtocol                    string // off | v1 | v2
	MetricsAddress                   string // host:port, empty = off
	AccessLog                        bool

	TLSInspectTimeout  time.Duration // how long a service waits for a ClientHello
	ProxyHeaderTimeout time.Duration // how long a service waits for an inbound PROXY header
	SourceTableSize    int           // per-source table entries (access control)
	UDPIdleTimeout     time.Duration // a UDP flow ends after this long without a datagram
	MaxUDPFlows        int           // flows a UDP service keeps at most
}

// Profile returns the auto-tuned runtime for a number of backends
// (docs/configuration.md, Auto-tuned profile).
func Profile(backends int) Runtime {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	r := Runtime{
		ProtectionWindow:      ms(30000),
		ConnectionIdleTimeout: ms(120000),
		OverloadPolicy:        "reject",
		DrainTimeout:          ms(30000),
		Engine:                EngineAuto,
		ProxyProtocol:         ProxyOff,
		TLSInspectTimeout:     ms(5000),
		ProxyHeaderTimeout:    ms(3000),
		SourceTableSize:       65536,
		UDPIdleTimeout:        ms(30000),
	}
	switch {
	case backends <= 2:
		r.HealthCheckInterval, r.HealthCheckTimeout = ms(500), ms(800)
		r.HealthCheckFailThreshold, r.HealthCheckSuccessThreshold = 2, 1
		r.BackendConnectTimeout = ms(800)
		r.FailoverBackoffInitial, r.FailoverBackoffMax, r.BackendCooldown = ms(200), ms(5000), ms(500)
		r.ProtectionTriggerThreshold, r.ProtectionStableSuccessThreshold = 10, 12
		r.MaxConcurrentConnections = 4000
	case backends <= 5:
		r.HealthCheckInterval, r.HealthCheckTimeout = ms(700), ms(1000)
		r.HealthCheckFailThreshold, r.HealthCheckSuccessThreshold = 2, 1
		r.BackendConnectTimeout = ms(1000)
		r.FailoverBackoffInitial, r.FailoverBackoffMax, r.BackendCooldown = ms(300), ms(7000), ms(700)
		r.ProtectionTriggerThreshold, r.ProtectionStableSuccessThreshold = 12, 14
		r.MaxConcurrentConnections = 8000
	default:
		r.HealthCheckInterval, r.HealthCheckTimeout = ms(1000), ms(1200)
		r.HealthCheckFailThreshold, r.HealthCheckSuccessThreshold = 3, 2
		r.BackendConnectTimeout = ms(1200)
		r.FailoverBackoffInitial, r.FailoverBackoffMax, r.BackendCooldown = ms(500), ms(10000), ms(1000)
		r.ProtectionTriggerThreshold, r.ProtectionStableSuccessThreshold = 14, 16
		r.MaxConcurrentConnections = 12000
	}
	r.MaxUDPFlows = r.MaxConcurrentConnections
	return r
}

// Issue is one error or warning found in a config file.
type Issue struct {
	Message string `json:"message"`
	Line    int    `json:"line"` // 0 when not tied to a line
}

// Snapshot is a validated configuration. It is a value: nothing in bal
// mutates a Snapshot after Load returned it (Backends is never written to).
type Snapshot struct {
	Path string // absolute path it was loaded from ("" for Parse without a path)
	Mode Mode
	// Port, BindAddress, Method and Backends are the first service's
	// (Services[0]); they go away once every caller reads Services.
	Port        int
	BindAddress string // as configured, IPv6 brackets removed ("::" for "[::]")
	Method      Method
	LogLevel    slog.Level
	Backends    []Backend
	// Runtime is the top-level runtime: block over the first service's
	// auto-tuned profile. The process reads its process-wide keys (engine,
	// metrics_address, drain_timeout_ms, access_log); each service has its
	// own resolved Runtime.
	Runtime Runtime
	// Services are the configured services in file order (at least one
	// once Parse succeeded); the single-service form is one service named
	// DefaultServiceName.
	Services []Service
	// Single is true for a file in the single-service form.
	Single   bool
	Warnings []Issue
}

// ListenAddress is "bind_address:port" ("[::]:9295" for IPv6).
func (s *Snapshot) ListenAddress() string {
	return net.JoinHostPort(s.BindAddress, strconv.Itoa(s.Port))
}
