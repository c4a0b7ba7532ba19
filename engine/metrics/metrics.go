package metrics

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/policy"
	"github.com/bal-lb/bal/engine/pool"
	"github.com/bal-lb/bal/engine/protect"
	"github.com/bal-lb/bal/engine/server"
)

// ContentType is the HTTP Content-Type of the exposition.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Handler serves GET and HEAD /metrics: the exposition of status(), with
// bal_info labelled with version ("" means "unknown"). Other paths are 404,
// other methods 405. It is what runtime.metrics_address and the control
// socket serve (server.Options.Metrics builds it over the server's status).
func Handler(status func() server.Status, version string) http.Handler {
	write := Writer(version)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", ContentType)
		if r.Method == http.MethodHead {
			return
		}
		write(w, status()) // one Write of the whole exposition
	})
}

// Label values of the stable metrics (docs/metrics.md#stable-metrics).
const (
	DirectionClientToBackend = "client_to_backend"
	DirectionBackendToClient = "backend_to_client"
	ReasonTimeout            = "timeout"
	ReasonRefused            = "refused"
	ReasonOther              = "other"
	ResultOK                 = "ok"
	ResultError              = "error"
)

// protectionReasons are the values of bal_protection_mode_reason's label,
// all present at every scrape.
var protectionReasons = []protect.Reason{protect.ReasonStorm, protect.ReasonExhausted}

// Write writes the exposition of st to w; bal_info's version label is
// "unknown".
func Write(w io.Writer, st server.Status) { Writer("")(w, st) }

// Writer returns a function writing the exposition of a status, with
// bal_info labelled with version ("" means "unknown").
func Writer(version string) func(io.Writer, server.Status) {
	if version == "" {
		version = "unknown"
	}
	return func(w io.Writer, st server.Status) {
		_, _ = w.Write(Append(make([]byte, 0, 4096), st, version))
	}
}

// Append appends the exposition of st to dst and returns the extended slice.
// Families are in a fixed order, and within a family services, pools and
// backends are in config order.
func Append(dst []byte, st server.Status, version string) []byte {
	e := exposition{b: dst}
	svcs := st.Services

	e.family("bal_info", "gauge", "Constant 1, labelled with the engine in use, the first service's balancing method and the bal version.")
	e.sample("bal_info", labels{"engine", st.Engine, "method", st.Method, "version", version}, 1)

	e.family("bal_service_info", "gauge", "Constant 1 per configured service, labelled with its protocol, listen address as configured and balancing method.")
	for _, ss := range svcs {
		e.sample("bal_service_info", labels{"service", ss.Name, "protocol", string(ss.Protocol), "address", net.JoinHostPort(ss.BindAddress, strconv.Itoa(ss.Port)), "method", string(ss.Policy.Method)}, 1)
	}

	e.family("bal_start_time_seconds", "gauge", "Unix time at which this bal instance started serving.")
	start := 0.0
	if !st.Started.IsZero() {
		start = float64(st.Started.UnixMilli()) / 1e3 // whole milliseconds print exactly
	}
	e.float("bal_start_time_seconds", nil, start)

	e.family("bal_connections_active", "gauge", "Client connections open now (connecting to a backend or relaying).")
	for _, ss := range svcs {
		e.sample("bal_connections_active", labels{"service", ss.Name}, nonNeg(ss.Policy.Active))
	}

	e.family("bal_connections_total", "counter", "Client connections admitted since start (rejected ones excluded).")
	for _, ss := range svcs {
		e.sample("bal_connections_total", labels{"service", ss.Name}, ss.Policy.Total)
	}

	e.family("bal_connections_rejected_total", "counter", "Client connections reset at admission, by reason.")
	for _, ss := range svcs {
		for _, r := range engine.RejectReasons() {
			e.sample("bal_connections_rejected_total", labels{"service", ss.Name, "reason", string(r)}, ss.Policy.RejectedBy[r])
		}
	}

	e.family("bal_connections_no_backend_total", "counter", "Admitted client connections closed because every backend was unavailable.")
	for _, ss := range svcs {
		e.sample("bal_connections_no_backend_total", labels{"service", ss.Name}, ss.Policy.NoBackend)
	}

	e.family("bal_bytes_total", "counter", "Bytes relayed, by direction, including connections still open.")
	for _, ss := range svcs {
		e.sample("bal_bytes_total", labels{"service", ss.Name, "direction", DirectionClientToBackend}, ss.Stats.BytesIn)
		e.sample("bal_bytes_total", labels{"service", ss.Name, "direction", DirectionBackendToClient}, ss.Stats.BytesOut)
	}

	udp := make([]*server.ServiceStatus, 0, len(svcs))
	for i := range svcs {
		if svcs[i].Protocol == config.UDP {
			udp = append(udp, &svcs[i])
		}
	}
	e.family("bal_udp_flows_active", "gauge", "UDP flows open now (a flow is one client address:port and its backend).")
	for _, ss := range udp {
		e.sample("bal_udp_flows_active", labels{"service", ss.Name}, nonNeg(ss.Policy.Active))
	}

	e.family("bal_udp_flows_total", "counter", "UDP flows admitted since start (refused ones excluded).")
	for _, ss := range udp {
		e.sample("bal_udp_flows_total", labels{"service", ss.Name}, ss.Policy.Total)
	}

	e.family("bal_udp_datagrams_total", "counter", "UDP datagrams relayed, by direction.")
	for _, ss := range udp {
		e.sample("bal_udp_datagrams_total", labels{"service", ss.Name, "direction", DirectionClientToBackend}, ss.Stats.DatagramsIn)
		e.sample("bal_udp_datagrams_total", labels{"service", ss.Name, "direction", DirectionBackendToClient}, ss.Stats.DatagramsOut)
	}

	e.family("bal_udp_dropped_total", "counter", "UDP datagrams dropped, by reason: refused flows' datagrams (one each) and the engine's own drops.")
	for _, ss := range udp {
		dropped := engine.UDPDropped(ss.Policy.RejectedBy, ss.Stats.Dropped)
		for _, r := range engine.UDPDropNames() {
			e.sample("bal_udp_dropped_total", labels{"service", ss.Name, "reason", r}, dropped[r])
		}
	}

	e.family("bal_route_matches_total", "counter", "Client connections routed to the route's pool.")
	for _, ss := range svcs {
		for _, p := range ss.Policy.Pools {
			if p.Route {
				e.sample("bal_route_matches_total", labels{"service", ss.Name, "route", p.Name}, p.Matched)
			}
		}
	}

	e.family("bal_inspect_results_total", "counter", "TLS ClientHello inspections, by result (all 0 for a service that does not inspect).")
	for _, ss := range svcs {
		for _, r := range engine.InspectResults() {
			e.sample("bal_inspect_results_total", labels{"service", ss.Name, "result", r.String()}, ss.Policy.Inspected[r])
		}
	}

	backends := func(name, typ, help string, value func(b *policy.BackendStatus) uint64) {
		e.family(name, typ, help)
		for _, ss := range svcs {
			for _, p := range ss.Policy.Pools {
				for i := range p.Backends {
					e.sample(name, labels{"service", ss.Name, "pool", p.Name, "backend", p.Backends[i].Address}, value(&p.Backends[i]))
				}
			}
		}
	}
	backends("bal_backend_up", "gauge", "1 when the backend is reachable (health after the fail/success thresholds), else 0.",
		func(b *policy.BackendStatus) uint64 { return boolNum(b.Reachable) })
	e.family("bal_backend_admin_state", "gauge", "1 for the backend's admin state (ready, drain, maint), 0 for the other two.")
	for _, ss := range svcs {
		for _, p := range ss.Policy.Pools {
			for _, b := range p.Backends {
				ls := labels{"service", ss.Name, "pool", p.Name, "backend", b.Address, "state", ""}
				for _, a := range pool.AdminStates() {
					ls[7] = a.String()
					e.sample("bal_backend_admin_state", ls, boolNum(b.Admin == a))
				}
			}
		}
	}
	backends("bal_backend_weight", "gauge", "Configured weight of the backend.",
		func(b *policy.BackendStatus) uint64 { return uint64(max(b.Weight, 0)) })
	backends("bal_backend_connections_active", "gauge", "Client connections relayed to the backend now.",
		func(b *policy.BackendStatus) uint64 { return nonNeg(b.Active) })
	backends("bal_backend_connections_total", "counter", "Client connections relayed to the backend since it was configured.",
		func(b *policy.BackendStatus) uint64 { return b.Total })

	e.family("bal_backend_connect_failures_total", "counter", "Failed connects from bal to the backend, by reason.")
	for _, ss := range svcs {
		for _, p := range ss.Policy.Pools {
			for _, b := range p.Backends {
				ls := labels{"service", ss.Name, "pool", p.Name, "backend", b.Address, "reason", ""}
				for _, f := range []struct {
					reason string
					n      uint64
				}{{ReasonTimeout, b.Counters.Timeout}, {ReasonRefused, b.Counters.Refused}, {ReasonOther, b.Counters.Other}} {
					ls[7] = f.reason
					e.sample("bal_backend_connect_failures_total", ls, f.n)
				}
			}
		}
	}

	e.family("bal_local_connect_failures_total", "counter", "Backend connects that failed for lack of local descriptors (not counted against any backend).")
	for _, ss := range svcs {
		e.sample("bal_local_connect_failures_total", labels{"service", ss.Name}, ss.Policy.LocalFailures)
	}

	e.family("bal_health_check_rounds_total", "counter", "Active health-check rounds completed.")
	for _, ss := range svcs {
		e.sample("bal_health_check_rounds_total", labels{"service", ss.Name}, ss.Policy.HealthRounds)
	}

	e.family("bal_protection_mode", "gauge", "1 while the service's protection mode is on, else 0.")
	for _, ss := range svcs {
		e.sample("bal_protection_mode", labels{"service", ss.Name}, boolNum(ss.Policy.Protection.Enabled))
	}

	e.family("bal_protection_mode_reason", "gauge", "1 for the reason protection mode is on (the latest trigger), 0 for the others.")
	for _, ss := range svcs {
		pr := ss.Policy.Protection
		for _, r := range protectionReasons {
			e.sample("bal_protection_mode_reason", labels{"service", ss.Name, "reason", string(r)}, boolNum(pr.Enabled && pr.Reason == string(r)))
		}
	}

	e.family("bal_protection_transitions_total", "counter", "Protection mode transitions (on and off).")
	for _, ss := range svcs {
		e.sample("bal_protection_transitions_total", labels{"service", ss.Name}, ss.Policy.Protection.Transitions)
	}

	e.family("bal_reloads_total", "counter", "Configuration reloads, by result.")
	e.sample("bal_reloads_total", labels{"result", ResultOK}, st.Reloads)
	e.sample("bal_reloads_total", labels{"result", ResultError}, st.ReloadFailures)

	e.family("bal_last_reload_successful", "gauge", "0 when the latest reload was rejected, else 1 (also before any reload).")
	e.sample("bal_last_reload_successful", nil, boolNum(st.LastReload == nil || st.LastReload.OK))

	e.family("bal_listeners_draining", "gauge", "Old listeners (of a service that moved or was removed by a reload) still finishing their connections.")
	e.sample("bal_listeners_draining", nil, uint64(max(st.Draining, 0)))

	e.family("bal_access_log_dropped_total", "counter", "Access log lines dropped because the log writer was behind.")
	for _, ss := range svcs {
		e.sample("bal_access_log_dropped_total", labels{"service", ss.Name}, ss.Policy.AccessLogDropped)
	}
	return e.b
}

// labels are name, value pairs in output order.
type labels []string

type exposition struct{ b []byte }

func (e *exposition) family(name, typ, help string) {
	e.b = append(e.b, "# HELP "...)
	e.b = append(e.b, name...)
	e.b = append(e.b, ' ')
	e.b = appendEscaped(e.b, help, false)
	e.b = append(e.b, "\n# TYPE "...)
	e.b = append(e.b, name...)
	e.b = append(e.b, ' ')
	e.b = append(e.b, typ...)
	e.b = append(e.b, '\n')
}

func (e *exposition) series(name string, ls labels) {
	e.b = append(e.b, name...)
	if len(ls) > 0 {
		e.b = append(e.b, '{')
		for i := 0; i+1 < len(ls); i += 2 {
			if i > 0 {
				e.b = append(e.b, ',')
			}
			e.b = append(e.b, ls[i]...)
			e.b = append(e.b, '=', '"')
			e.b = appendEscaped(e.b, ls[i+1], true)
			e.b = append(e.b, '"')
		}
		e.b = append(e.b, '}')
	}
	e.b = append(e.b, ' ')
}

func (e *exposition) sample(name string, ls labels, v uint64) {
	e.series(name, ls)
	e.b = strconv.AppendUint(e.b, v, 10)
	e.b = append(e.b, '\n')
}

func (e *exposition) float(name string, ls labels, v float64) {
	e.series(name, ls)
	e.b = strconv.AppendFloat(e.b, v, 'f', -1, 64)
	e.b = append(e.b, '\n')
}

// appendEscaped escapes per the text format: backslash and newline always,
// the double quote in label values only. Invalid UTF-8 (which a scraper
// would reject) becomes U+FFFD.
func appendEscaped(dst []byte, s string, label bool) []byte {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if !strings.ContainsAny(s, "\\\n\"") {
		return append(dst, s...)
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			dst = append(dst, '\\', '\\')
		case c == '\n':
			dst = append(dst, '\\', 'n')
		case c == '"' && label:
			dst = append(dst, '\\', '"')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

func boolNum(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func nonNeg(n int64) uint64 { return uint64(max(n, 0)) }
