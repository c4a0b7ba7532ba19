package control

import (
	"strings"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/limits"
	"github.com/bal-lb/bal/engine/policy"
	"github.com/bal-lb/bal/engine/server"
)

// States of a running instance.
const (
	StateRunning  = "running"
	StateDraining = "draining" // shutting down: no new connections, open ones finishing
)

// Status is the document GET /status returns: the live state of one bal.
// Times are UTC; a time that has not happened yet (no health check so far,
// no cooldown) is null.
type Status struct {
	State       string    `json:"state"` // running | draining
	PID         int       `json:"pid"`
	Version     string    `json:"version"`
	ConfigPath  string    `json:"config_path"`
	Mode        string    `json:"mode"`
	BindAddress string    `json:"bind_address"` // as configured
	Port        int       `json:"port"`         // as configured
	Listen      string    `json:"listen"`       // the bound address, "ip:port"
	Method      string    `json:"method"`
	Engine      string    `json:"engine"` // gnet | std
	LogLevel    string    `json:"log_level"`
	Started     time.Time `json:"started"`
	UptimeS     int64     `json:"uptime_s"`

	BackendTotal     int       `json:"backend_total"`
	BackendReachable int       `json:"backend_reachable"`
	Backends         []Backend `json:"backends"` // config order

	ActiveConnections    int64      `json:"active_connections"`
	TotalConnections     uint64     `json:"total_connections"`      // admitted since start (rejected excluded)
	RejectedConnections  uint64     `json:"rejected_connections"`   // reset at admission (max_concurrent_connections, fd headroom)
	NoBackendConnections uint64     `json:"no_backend_connections"` // admitted, then closed because every backend failed
	LocalConnectFailures uint64     `json:"local_connect_failures"` // backend connects that failed for lack of local descriptors or ports
	Bytes                Bytes      `json:"bytes"`
	LastCheckTime        *time.Time `json:"last_check_time"` // end of the latest health round
	HealthRounds         uint64     `json:"health_rounds"`
	ProtectionMode       Protection `json:"protection_mode"`

	LastReload     *Reload `json:"last_reload"` // null before the first reload
	Reloads        uint64  `json:"reloads"`
	ReloadFailures uint64  `json:"reload_failures"`

	DrainingListeners        int    `json:"draining_listeners"` // old listeners still finishing connections after a reload, every service's
	Goroutines               int    `json:"goroutines"`         // the daemon's goroutines now (leak checks)
	DrainTimeoutMS           int64  `json:"drain_timeout_ms"`
	MaxConcurrentConnections int    `json:"max_concurrent_connections"`
	TCPBacklog               int    `json:"tcp_backlog"` // 0: the kernel's somaxconn
	AccessLog                bool   `json:"access_log"`
	AccessLogDropped         uint64 `json:"access_log_dropped"`
	Limits                   Limits `json:"limits"`

	// Services are every configured service in config order; the
	// top-level fields above that describe a service (bind_address, port,
	// listen, method, backends, the connection and byte counters,
	// protection_mode) are the first one's.
	Services []Service `json:"services"`
}

// Service is one service as the running instance sees it.
type Service struct {
	Name        string `json:"name"`
	Protocol    string `json:"protocol"`     // tcp | udp
	BindAddress string `json:"bind_address"` // as configured
	Port        int    `json:"port"`         // as configured
	Listen      string `json:"listen"`       // the bound address, "ip:port"; "" when not listening
	Engine      string `json:"engine"`
	Method      string `json:"method"`

	ActiveConnections int64  `json:"active_connections"`
	TotalConnections  uint64 `json:"total_connections"` // admitted since start (rejected excluded)
	// RejectedConnections counts refused connections by reason; every
	// reason is present.
	RejectedConnections  map[string]uint64 `json:"rejected_connections"`
	NoBackendConnections uint64            `json:"no_backend_connections"`
	LocalConnectFailures uint64            `json:"local_connect_failures"`
	// InspectResults counts ClientHello inspections by result; every
	// result is present (all 0 for a service that does not inspect).
	InspectResults           map[string]uint64 `json:"inspect_results"`
	Bytes                    Bytes             `json:"bytes"`
	LastCheckTime            *time.Time        `json:"last_check_time"`
	HealthRounds             uint64            `json:"health_rounds"`
	ProtectionMode           Protection        `json:"protection_mode"`
	DrainingListeners        int               `json:"draining_listeners"`
	MaxConcurrentConnections int               `json:"max_concurrent_connections"`
	AccessLogDropped         uint64            `json:"access_log_dropped"`
	// ClosedOnDown counts connections reset because a health check took
	// their backend down (on_backend_down: close); ClosedByAdmin those reset
	// when the close-after delay of a drain or maint ran out.
	ClosedOnDown  uint64 `json:"closed_on_down"`
	ClosedByAdmin uint64 `json:"closed_by_admin"`

	Backends []Backend `json:"backends"` // the default pool, config order; empty when the service has only routes
	Routes   []Route   `json:"routes"`   // config order

	// UDP services only (absent on TCP ones): flows open now and since
	// start, datagrams relayed, and datagrams dropped by reason (every
	// reason of engine.UDPDropNames present).
	ActiveFlows *int64            `json:"active_flows,omitempty"`
	TotalFlows  *uint64           `json:"total_flows,omitempty"`
	Datagrams   *Datagrams        `json:"datagrams,omitempty"`
	Dropped     map[string]uint64 `json:"dropped,omitempty"`
	MaxUDPFlows *int              `json:"max_udp_flows,omitempty"`
}

// Datagrams are a UDP service's datagrams relayed since start, live.
type Datagrams struct {
	ClientToBackend uint64 `json:"client_to_backend"`
	BackendToClient uint64 `json:"backend_to_client"`
}

// Route is one route of a service and its pool.
type Route struct {
	Name         string    `json:"name"`
	Match        Match     `json:"match"`
	MatchedTotal uint64    `json:"matched_total"` // connections routed to it
	Method       string    `json:"method"`
	Backends     []Backend `json:"backends"`
}

// Match is what a route matches; an empty list is a key the route does not
// use.
type Match struct {
	SNI    []string `json:"sni"`
	ALPN   []string `json:"alpn"`
	Source []string `json:"source"`
}

// MatchFrom is m in its wire form; a key the route does not use is [].
func MatchFrom(m config.Match) Match {
	out := Match{SNI: nonNil(m.SNI), ALPN: nonNil(m.ALPN), Source: make([]string, 0, len(m.Source))}
	for _, p := range m.Source {
		out.Source = append(out.Source, p.String())
	}
	return out
}

// String is "sni=a,b alpn=h2 source=10.0.0.0/8", the keys a route uses.
func (m Match) String() string { return config.FormatMatch(m.SNI, m.ALPN, m.Source) }

// Backend is one backend as the running instance sees it.
type Backend struct {
	Address           string     `json:"address"`   // as configured, "host:port"
	Reachable         bool       `json:"reachable"` // health after thresholds
	Checked           bool       `json:"checked"`   // at least one check or connect outcome seen
	Weight            int        `json:"weight"`
	ActiveConnections int64      `json:"active_connections"`
	TotalConnections  uint64     `json:"total_connections"`
	LastCheckTime     *time.Time `json:"last_check_time"`
	Counters          Counters   `json:"counters"`
	FailStreak        uint32     `json:"fail_streak"`    // consecutive failed connects
	CooldownUntil     *time.Time `json:"cooldown_until"` // null when not in cooldown
	Addresses         []string   `json:"addresses"`      // resolved addresses tried in order
	AdminState        string     `json:"admin_state"`    // ready | drain | maint
	// LastCheckError is the latest active health check's failure,
	// "reason: detail" (reason check_failed, timeout, refused, dns or
	// other); null after a success or before any check.
	LastCheckError *string `json:"last_check_error"`
	// ActiveFlows is a UDP service's backend's flows open now (absent on
	// TCP services; the same count as active_connections).
	ActiveFlows *int64 `json:"active_flows,omitempty"`
}

// Counters are a backend's connect failures by reason since start.
type Counters struct {
	Timeout uint64 `json:"timeout"`
	Refused uint64 `json:"refused"`
	Other   uint64 `json:"other"`
}

// Protection is protection mode's state.
type Protection struct {
	Enabled     bool       `json:"enabled"`
	Reason      *string    `json:"reason"` // null when off
	Since       *time.Time `json:"since"`  // null when off
	Transitions uint64     `json:"transitions"`
}

// Bytes relayed since start, live (open connections included).
type Bytes struct {
	ClientToBackend uint64 `json:"client_to_backend"`
	BackendToClient uint64 `json:"backend_to_client"`
}

// Limits are the running process's resource limits.
type Limits struct {
	NoFileSoft       uint64 `json:"nofile_soft"`
	NoFileHard       uint64 `json:"nofile_hard"`
	Somaxconn        int    `json:"somaxconn"` // 0 when unknown
	FDsPerConnection int    `json:"fds_per_connection"`
}

// Reload is the outcome of a reload: POST /reload's answer, and the
// last_reload of Status.
type Reload struct {
	OK      bool      `json:"ok"`
	Time    time.Time `json:"time"`
	Error   *string   `json:"error"`   // null when OK; the cause chain when rejected
	Changes []string  `json:"changes"` // what changed; empty when nothing did or when rejected
}

// ReloadFrom converts a server reload result; nil gives nil.
func ReloadFrom(r *server.ReloadResult) *Reload {
	if r == nil {
		return nil
	}
	out := &Reload{OK: r.OK, Time: r.Time.UTC(), Changes: r.Changes}
	if out.Changes == nil {
		out.Changes = []string{}
	}
	if !r.OK {
		e := r.Error
		out.Error = &e
	}
	return out
}

// StatusFrom builds the Status document from a server's live state and the
// snapshot in force, at time now.
func StatusFrom(st server.Status, snap *config.Snapshot, now time.Time) Status {
	p := st.Policy
	def := p.DefaultBackends()
	out := Status{
		State:             StateRunning,
		PID:               st.PID,
		ConfigPath:        st.ConfigPath,
		BindAddress:       st.BindAddress,
		Port:              st.Port,
		Method:            st.Method,
		Engine:            st.Engine,
		Started:           st.Started.UTC(),
		BackendTotal:      len(def),
		Backends:          backendsFrom(def),
		ActiveConnections: p.Active,
		TotalConnections:  p.Total,
		// The policy counts every refusal: its own (Admit) and the
		// engines' (no descriptor headroom, PROXY header).
		RejectedConnections:  p.Rejected,
		NoBackendConnections: p.NoBackend,
		LocalConnectFailures: p.LocalFailures,
		Bytes:                Bytes{ClientToBackend: st.BytesIn, BackendToClient: st.BytesOut},
		LastCheckTime:        timePtr(p.LastCheck),
		HealthRounds:         p.HealthRounds,
		ProtectionMode:       protectionFrom(p.Protection),
		LastReload:           ReloadFrom(st.LastReload),
		Reloads:              st.Reloads,
		ReloadFailures:       st.ReloadFailures,
		DrainingListeners:    st.Draining,
		Goroutines:           st.Goroutines,
		AccessLogDropped:     p.AccessLogDropped,
		Services:             make([]Service, 0, len(st.Services)),
	}
	if st.Listen.IsValid() {
		out.Listen = st.Listen.String()
	}
	if !st.Started.IsZero() {
		out.UptimeS = int64(now.Sub(st.Started) / time.Second)
	}
	if snap != nil {
		out.Mode = string(snap.Mode)
		out.LogLevel = strings.ToLower(snap.LogLevel.String())
		out.DrainTimeoutMS = snap.Runtime.DrainTimeout.Milliseconds()
		out.MaxConcurrentConnections = snap.Runtime.MaxConcurrentConnections
		out.TCPBacklog = snap.Runtime.TCPBacklog
		out.AccessLog = snap.Runtime.AccessLog
	}
	for _, b := range out.Backends {
		if b.Reachable {
			out.BackendReachable++
		}
	}
	for _, ss := range st.Services {
		out.Services = append(out.Services, serviceFrom(ss))
	}
	out.Limits = processLimits(st.FDsPerConn)
	return out
}

// serviceFrom builds one entry of services[].
func serviceFrom(ss server.ServiceStatus) Service {
	p := ss.Policy
	out := Service{
		Name:                     ss.Name,
		Protocol:                 string(ss.Protocol),
		BindAddress:              ss.BindAddress,
		Port:                     ss.Port,
		Engine:                   ss.Engine,
		Method:                   string(p.Method),
		ActiveConnections:        p.Active,
		TotalConnections:         p.Total,
		RejectedConnections:      make(map[string]uint64, len(engine.RejectReasons())),
		NoBackendConnections:     p.NoBackend,
		LocalConnectFailures:     p.LocalFailures,
		InspectResults:           make(map[string]uint64, len(engine.InspectResults())),
		Bytes:                    Bytes{ClientToBackend: ss.Stats.BytesIn, BackendToClient: ss.Stats.BytesOut},
		LastCheckTime:            timePtr(p.LastCheck),
		HealthRounds:             p.HealthRounds,
		ProtectionMode:           protectionFrom(p.Protection),
		DrainingListeners:        ss.Draining,
		MaxConcurrentConnections: ss.MaxConnections,
		AccessLogDropped:         p.AccessLogDropped,
		ClosedOnDown:             p.ClosedOnDown,
		ClosedByAdmin:            p.ClosedByAdmin,
		Backends:                 backendsFrom(p.DefaultBackends()),
		Routes:                   []Route{},
	}
	if ss.Listen.IsValid() {
		out.Listen = ss.Listen.String()
	}
	for _, r := range engine.RejectReasons() {
		out.RejectedConnections[string(r)] = p.RejectedBy[r]
	}
	for _, r := range engine.InspectResults() {
		out.InspectResults[r.String()] = p.Inspected[r]
	}
	for _, pool := range p.Pools {
		if !pool.Route {
			continue
		}
		out.Routes = append(out.Routes, Route{
			Name:         pool.Name,
			Match:        MatchFrom(pool.Match),
			MatchedTotal: pool.Matched,
			Method:       string(pool.Method),
			Backends:     backendsFrom(pool.Backends),
		})
	}
	if ss.Protocol == config.UDP {
		udpFrom(&out, ss)
	}
	return out
}

// udpFrom fills a UDP service's flow, datagram and drop figures.
func udpFrom(out *Service, ss server.ServiceStatus) {
	p := ss.Policy
	active, total := p.Active, p.Total
	out.ActiveFlows, out.TotalFlows = &active, &total
	out.Datagrams = &Datagrams{ClientToBackend: ss.Stats.DatagramsIn, BackendToClient: ss.Stats.DatagramsOut}
	out.Dropped = engine.UDPDropped(p.RejectedBy, ss.Stats.Dropped)
	limit := ss.MaxUDPFlows
	out.MaxUDPFlows = &limit
	flows := func(bs []Backend) {
		for i := range bs {
			n := bs[i].ActiveConnections
			bs[i].ActiveFlows = &n
		}
	}
	flows(out.Backends)
	for i := range out.Routes {
		flows(out.Routes[i].Backends)
	}
}

func protectionFrom(ps policy.ProtectionStatus) Protection {
	out := Protection{Enabled: ps.Enabled, Transitions: ps.Transitions}
	if ps.Enabled {
		r := ps.Reason
		out.Reason = &r
		out.Since = timePtr(ps.Since)
	}
	return out
}

// backendsFrom converts a pool's backends, in config order; never nil.
func backendsFrom(bs []policy.BackendStatus) []Backend {
	out := make([]Backend, 0, len(bs))
	for _, b := range bs {
		wb := Backend{
			Address:           b.Address,
			Reachable:         b.Reachable,
			Checked:           b.Checked,
			Weight:            b.Weight,
			ActiveConnections: b.Active,
			TotalConnections:  b.Total,
			LastCheckTime:     timePtr(b.LastCheck),
			Counters:          Counters{Timeout: b.Counters.Timeout, Refused: b.Counters.Refused, Other: b.Counters.Other},
			FailStreak:        b.Streak,
			CooldownUntil:     timePtr(b.Cooldown),
			Addresses:         make([]string, 0, len(b.Addrs)),
			AdminState:        b.Admin.String(),
		}
		if b.CheckError != "" {
			e := b.CheckError
			wb.LastCheckError = &e
		}
		for _, a := range b.Addrs {
			wb.Addresses = append(wb.Addresses, a.String())
		}
		out = append(out, wb)
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func processLimits(fdsPerConn int) Limits {
	l := Limits{FDsPerConnection: fdsPerConn}
	l.NoFileSoft, l.NoFileHard, _ = limits.NoFile()
	l.Somaxconn, _ = limits.Somaxconn()
	return l
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
