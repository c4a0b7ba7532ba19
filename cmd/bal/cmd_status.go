package main

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/control"
	"github.com/spf13/pflag"
)

// exitNotRunning is bal status's exit code when no bal runs (LSB).
const exitNotRunning = 3

// statusOptions are the flags of bal status.
type statusOptions struct {
	config string
	out    outputOptions
}

func statusCommand() *command {
	o := &statusOptions{}
	return &command{
		name:    "status",
		summary: "show what the running instance is doing now",
		usage:   "[-c FILE] [--brief] [--json] [--verbose]",
		help: `
Ask the running bal (over its control socket) what it is doing: listener,
engine, backends with their health and counters, connections, protection
mode, the last reload. -c only matters when no bal is running.

Exit codes: 0 running; 3 not running.`,
		flags: func(fs *pflag.FlagSet) {
			configFlag(fs, &o.config)
			o.out.register(fs, true)
		},
		run: func(e *env) int { return runStatus(e, o) },
	}
}

// statusJSON is bal status's JSON document (docs/operations.md#bal-status). Live fields are null
// when no bal runs; fields beyond the stable ones follow them.
type statusJSON struct {
	Running          bool            `json:"running"`
	PID              *int            `json:"pid"`
	ConfigPath       string          `json:"config_path"`
	BindAddress      *string         `json:"bind_address"`
	Port             *int            `json:"port"`
	Method           *string         `json:"method"`
	Engine           *string         `json:"engine"`
	UptimeS          *int64          `json:"uptime_s"`
	BackendTotal     *int            `json:"backend_total"`
	BackendReachable *int            `json:"backend_reachable"`
	Backends         []statusBackend `json:"backends"`
	Active           *int64          `json:"active_connections"`
	Total            *uint64         `json:"total_connections"`
	LastCheckTime    *time.Time      `json:"last_check_time"`
	ProtectionMode   *protectionJSON `json:"protection_mode"`
	LastReload       *control.Reload `json:"last_reload"`
	Reloads          *uint64         `json:"reloads"`
	ReloadFailures   *uint64         `json:"reload_failures"`
	Overall          string          `json:"overall"` // OK | WARN | FAILED
	State            *string         `json:"state"`   // running | draining
	Detail           *string         `json:"detail"`  // why it is not running, or why the control socket did not answer
	Listen           *string         `json:"listen"`  // the bound address
	Version          *string         `json:"version"` // the running bal's version
	Started          *time.Time      `json:"started"` // when it started serving
	Rejected         *uint64         `json:"rejected_connections"`
	NoBackend        *uint64         `json:"no_backend_connections"` // admitted, then closed: every backend failed
	LocalFailures    *uint64         `json:"local_connect_failures"` // backend connects that failed for lack of local fds or ports
	Bytes            *control.Bytes  `json:"bytes"`                  // relayed since start
	Draining         *int            `json:"draining_listeners"`
	Goroutines       *int            `json:"goroutines"`       // the daemon's goroutines now
	DrainTimeoutMS   *int64          `json:"drain_timeout_ms"` // what bal stop waits for, plus 5 s
	Limits           *control.Limits `json:"limits"`
	// Services is GET /status's services[] as the daemon sent it: every
	// service with its routes and backends; empty when not running.
	Services []control.Service `json:"services"`
	fault    triplet           // the human report's problem, if any
	live     *control.Status   // nil when not running or not answering
}

// statusBackend is one entry of backends[] (docs/operations.md#bal-status).
type statusBackend struct {
	Address       string           `json:"address"`
	Reachable     bool             `json:"reachable"`
	Weight        int              `json:"weight"`
	Active        int64            `json:"active_connections"`
	Total         uint64           `json:"total_connections"`
	LastCheckTime *time.Time       `json:"last_check_time"`
	Counters      control.Counters `json:"counters"`
	Checked       bool             `json:"checked"`
	FailStreak    uint32           `json:"fail_streak"`
	CooldownUntil *time.Time       `json:"cooldown_until"`
	Addresses     []string         `json:"addresses"`        // resolved addresses, tried in order
	AdminState    string           `json:"admin_state"`      // ready | drain | maint
	LastCheckErr  *string          `json:"last_check_error"` // the latest active check's failure; null after a success
}

// protectionJSON is protection_mode{enabled, reason}.
type protectionJSON struct {
	Enabled bool    `json:"enabled"`
	Reason  *string `json:"reason"`
}

func runStatus(e *env, o *statusOptions) int {
	res := status(context.Background(), o.config)
	switch {
	case o.out.json:
		if err := writeJSON(e.stdout, res); err != nil {
			fmt.Fprintf(e.stderr, "bal status: %v\n", err)
		}
	case o.out.brief:
		brief(e.stdout, res.Overall, statusBrief(res))
	default:
		statusReport(res, o.out.verbose).write(e.stdout)
	}
	if !res.Running {
		return exitNotRunning
	}
	return exitOK
}

// status builds the status document from the live daemon.
func status(ctx context.Context, flagPath string) *statusJSON {
	return statusFrom(findInstance(ctx), flagPath)
}

// statusFrom judges what findInstance found.
func statusFrom(f *found, flagPath string) *statusJSON {
	res := &statusJSON{Backends: []statusBackend{}, Services: []control.Service{}, Overall: levelFailed}
	st := f.live
	if st == nil {
		res.ConfigPath, _ = config.Resolve(flagPath)
		if !f.running() {
			reason := f.notRunningReason()
			res.Detail = &reason
			res.fault = triplet{
				what: "daemon is not running",
				why:  "service was not started or exited unexpectedly (" + reason + ")",
				do:   "run 'bal check', then 'bal doctor', then start with 'bal start -d'",
			}
			return res
		}
		// A bal process runs but its control socket does not answer.
		res.Running = true
		res.PID = &f.pid
		res.Overall = levelWarn
		reason := "control socket: " + f.liveErr.Error()
		res.Detail = &reason
		res.fault = triplet{
			what: "daemon is running but its control socket does not answer",
			why:  "it is still starting, it is stuck, or bal.sock was removed (" + f.liveErr.Error() + ")",
			do:   "run 'bal doctor'; if it persists, restart it with 'bal stop' and 'bal start -d'",
		}
		return res
	}

	res.live = st
	res.Running = true
	res.PID = &st.PID
	res.ConfigPath = st.ConfigPath
	res.BindAddress = &st.BindAddress
	res.Port = &st.Port
	res.Method = &st.Method
	res.Engine = &st.Engine
	res.UptimeS = &st.UptimeS
	res.BackendTotal = &st.BackendTotal
	res.BackendReachable = &st.BackendReachable
	for _, b := range st.Backends {
		res.Backends = append(res.Backends, statusBackend{
			Address:       b.Address,
			Reachable:     b.Reachable,
			Weight:        b.Weight,
			Active:        b.ActiveConnections,
			Total:         b.TotalConnections,
			LastCheckTime: b.LastCheckTime,
			Counters:      b.Counters,
			Checked:       b.Checked,
			FailStreak:    b.FailStreak,
			CooldownUntil: b.CooldownUntil,
			Addresses:     b.Addresses,
			AdminState:    b.AdminState,
			LastCheckErr:  b.LastCheckError,
		})
	}
	res.Active = &st.ActiveConnections
	res.Total = &st.TotalConnections
	res.LastCheckTime = st.LastCheckTime
	res.ProtectionMode = &protectionJSON{Enabled: st.ProtectionMode.Enabled, Reason: st.ProtectionMode.Reason}
	res.LastReload = st.LastReload
	res.Reloads = &st.Reloads
	res.ReloadFailures = &st.ReloadFailures
	res.State = &st.State
	res.Listen = &st.Listen
	res.Version = &st.Version
	res.Started = &st.Started
	res.Rejected = &st.RejectedConnections
	res.NoBackend = &st.NoBackendConnections
	res.LocalFailures = &st.LocalConnectFailures
	res.Bytes = &st.Bytes
	res.Draining = &st.DrainingListeners
	res.Goroutines = &st.Goroutines
	res.DrainTimeoutMS = &st.DrainTimeoutMS
	res.Limits = &st.Limits
	if st.Services != nil {
		res.Services = st.Services
	}

	sum := summarize(st)
	res.Overall = levelWarn
	switch {
	case st.State == control.StateDraining:
		res.fault = triplet{
			what: "daemon is shutting down",
			why:  "it was asked to stop: no new connections, open ones are finishing",
			do:   "wait for it to exit ('bal stop' waits), then start it again if needed",
		}
	case sum.backends > 0 && sum.reachable == 0:
		res.fault = triplet{
			what: "no backend is reachable",
			why:  "network path, backend service, or DNS is failing",
			do:   "run 'bal doctor --verbose' and fix backend host/port/firewall now",
		}
	case st.LastReload != nil && !st.LastReload.OK:
		why := "the config file was rejected"
		if st.LastReload.Error != nil {
			why = *st.LastReload.Error
		}
		res.fault = triplet{
			what: "the last reload was rejected; the previous configuration keeps serving",
			why:  why,
			do:   "fix the config file ('bal check'), then run 'bal graceful'",
		}
	case sum.protection != "off":
		res.fault = triplet{
			what: "protection mode is " + sum.protection,
			why:  "backends are timing out or refusing connections; failover backs off harder",
			do:   "run 'bal doctor --verbose' and recover the failing backends",
		}
	case sum.reachable < sum.backends:
		why := "partial outage or uneven backend health"
		if len(sum.degraded) > 0 {
			why += " (" + strings.Join(sum.degraded, "; ") + ")"
		}
		res.fault = triplet{
			what: "some backends are unreachable",
			why:  why,
			do:   "run 'bal doctor --verbose' and recover failing backends",
		}
	default:
		res.Overall = levelOK
	}
	return res
}

// summary is what the report and the judgement say about the whole
// instance: the top-level (first service's) figures for a config in the
// single-service form, else every service's and pool's together.
type summary struct {
	multi      bool // several services, or one with a name or routes of its own
	backends   int  // backends over the pools counted
	reachable  int
	active     int64
	total      uint64
	rejected   uint64
	bytes      control.Bytes
	protection string   // "off", "on (reason)", or "on (service: reason, ...)"
	degraded   []string // "service/pool: 1/2 reachable" for every pool short of backends
}

// multiService reports whether st needs the services view: more than one
// service, or one that is not the plain TCP service of the single-service
// form (a UDP service is shown with its flows).
func multiService(st *control.Status) bool {
	switch len(st.Services) {
	case 0:
		return false
	case 1:
		s := st.Services[0]
		return s.Name != config.DefaultServiceName || len(s.Routes) > 0 || s.Protocol == string(config.UDP)
	}
	return true
}

func summarize(st *control.Status) summary {
	if !multiService(st) {
		return summary{backends: st.BackendTotal, reachable: st.BackendReachable, active: st.ActiveConnections, total: st.TotalConnections,
			rejected: st.RejectedConnections, bytes: st.Bytes, protection: protectionWord(st.ProtectionMode)}
	}
	sum := summary{multi: true, protection: "off"}
	var on []string
	for _, svc := range st.Services {
		sum.active += svc.ActiveConnections
		sum.total += svc.TotalConnections
		for _, n := range svc.RejectedConnections {
			sum.rejected += n
		}
		sum.bytes.ClientToBackend += svc.Bytes.ClientToBackend
		sum.bytes.BackendToClient += svc.Bytes.BackendToClient
		if svc.ProtectionMode.Enabled {
			on = append(on, svc.Name+": "+reasonOr(svc.ProtectionMode.Reason))
		}
		for _, p := range pools(svc) {
			up := reachableOf(p.backends)
			sum.backends += len(p.backends)
			sum.reachable += up
			if up < len(p.backends) {
				sum.degraded = append(sum.degraded, fmt.Sprintf("%s/%s: %d/%d reachable", svc.Name, p.name, up, len(p.backends)))
			}
		}
	}
	if len(on) > 0 {
		sum.protection = "on (" + strings.Join(on, ", ") + ")"
	}
	return sum
}

// statusPool is one pool of a service as the report lists it.
type statusPool struct {
	name     string // the route's, or "default"
	backends []control.Backend
}

// pools are svc's routes' pools, then its default pool when it has backends.
func pools(svc control.Service) []statusPool {
	out := make([]statusPool, 0, len(svc.Routes)+1)
	for _, r := range svc.Routes {
		out = append(out, statusPool{r.Name, r.Backends})
	}
	if len(svc.Backends) > 0 {
		out = append(out, statusPool{config.DefaultServiceName, svc.Backends})
	}
	return out
}

func reachableOf(bs []control.Backend) int {
	n := 0
	for _, b := range bs {
		if b.Reachable {
			n++
		}
	}
	return n
}

func reasonOr(r *string) string {
	if r == nil || *r == "" {
		return "unknown reason"
	}
	return *r
}

// statusBrief is the one line of --brief, after the level.
func statusBrief(res *statusJSON) string {
	st := res.live
	switch {
	case !res.Running:
		return "not running: " + *res.Detail
	case st == nil:
		return fmt.Sprintf("running pid=%d, control socket not answering", *res.PID)
	}
	sum := summarize(st)
	where := "on " + st.Listen
	if sum.multi {
		where = fmt.Sprintf("with %d services", len(st.Services))
	}
	s := fmt.Sprintf("running pid=%d %s (%s), %d/%d backends reachable, %d active connections, protection %s",
		st.PID, where, st.Engine, sum.reachable, sum.backends, sum.active, sum.protection)
	if res.fault.what != "" {
		s += ": " + res.fault.what
	}
	return s
}

func protectionWord(p control.Protection) string {
	if p.Enabled {
		return "on (" + reasonOr(p.Reason) + ")"
	}
	return "off"
}

// statusReport is the human report: the original's concise shape, with the
// listener, counters, reloads and every backend under --verbose.
func statusReport(res *statusJSON, verbose bool) *report {
	r := newReport("status")
	r.field("overall", res.Overall)
	st := res.live
	switch {
	case !res.Running:
		r.field("daemon", "stopped")
		if verbose {
			r.field("config", orDash(res.ConfigPath))
			r.field("detail", *res.Detail)
			r.field("hint", "daemon is not running. Start it with 'bal start -d'")
		}
		r.problem(res.fault)
		return r
	case st == nil:
		r.field("daemon", fmt.Sprintf("running (pid=%d)", *res.PID))
		r.field("control", "not answering")
		if verbose {
			r.field("detail", *res.Detail)
		}
		r.problem(res.fault)
		return r
	}
	daemon := fmt.Sprintf("running (pid=%d)", st.PID)
	if st.State == control.StateDraining {
		daemon = fmt.Sprintf("draining (pid=%d)", st.PID)
	}
	r.field("daemon", daemon)
	sum := summarize(st)
	r.field("backends", fmt.Sprintf("%d/%d reachable", sum.reachable, sum.backends))
	if out := outOfService(st); out != "" {
		r.field("admin", out+" (see 'bal backend list')")
	}
	r.field("connections", fmt.Sprintf("%d active, %d total", sum.active, sum.total))
	r.field("protection_mode", sum.protection)
	if sum.multi {
		servicesReport(r, res, sum, verbose)
		return r
	}
	if verbose {
		r.field("listen", st.Listen)
		r.field("engine", st.Engine)
		r.field("method", st.Method)
		r.field("config", st.ConfigPath)
		r.field("version", orDash(st.Version))
		r.field("uptime", (time.Duration(st.UptimeS) * time.Second).String())
		r.field("active_connections", st.ActiveConnections)
		r.field("total_connections", st.TotalConnections)
		r.field("rejected_connections", st.RejectedConnections)
		r.field("bytes", fmt.Sprintf("client_to_backend=%d backend_to_client=%d", st.Bytes.ClientToBackend, st.Bytes.BackendToClient))
		r.field("last_check_time", timeOrDash(st.LastCheckTime))
		r.field("reloads", fmt.Sprintf("%d ok, %d rejected", st.Reloads, st.ReloadFailures))
		r.field("last_reload", lastReloadLine(st.LastReload))
		if st.DrainingListeners > 0 {
			r.field("draining_listeners", st.DrainingListeners)
		}
		lines := make([]string, 0, len(st.Backends))
		for _, b := range st.Backends {
			lines = append(lines, backendLine(b))
		}
		r.list("backend_details", lines)
		switch {
		case st.BackendTotal > 0 && st.BackendReachable == 0:
			r.field("hint", "no reachable backend. Run 'bal doctor' and verify backend host/port/firewall")
		case st.BackendReachable < st.BackendTotal:
			r.field("hint", "partial backend reachability detected. Check failing backends in backend_details")
		}
	} else if st.LastReload != nil && !st.LastReload.OK {
		r.field("last_reload", lastReloadLine(st.LastReload))
	}
	if res.fault.what != "" {
		r.problem(res.fault)
	} else {
		r.next("continue monitoring with 'bal status'")
	}
	return r
}

// servicesReport is the rest of the human report for several services (or
// one with a name or routes): one line per service, and under --verbose the
// process-wide figures, then each service's listener, counters, routes and
// backends.
func servicesReport(r *report, res *statusJSON, sum summary, verbose bool) {
	st := res.live
	if verbose {
		r.field("engine", st.Engine)
		r.field("config", st.ConfigPath)
		r.field("version", orDash(st.Version))
		r.field("uptime", (time.Duration(st.UptimeS) * time.Second).String())
		r.field("active_connections", sum.active)
		r.field("total_connections", sum.total)
		r.field("rejected_connections", sum.rejected)
		r.field("bytes", fmt.Sprintf("client_to_backend=%d backend_to_client=%d", sum.bytes.ClientToBackend, sum.bytes.BackendToClient))
		r.field("reloads", fmt.Sprintf("%d ok, %d rejected", st.Reloads, st.ReloadFailures))
		r.field("last_reload", lastReloadLine(st.LastReload))
		if st.DrainingListeners > 0 {
			r.field("draining_listeners", st.DrainingListeners)
		}
	} else if st.LastReload != nil && !st.LastReload.OK {
		r.field("last_reload", lastReloadLine(st.LastReload))
	}
	r.field("services", len(st.Services))
	for _, svc := range st.Services {
		up, n := 0, 0
		for _, p := range pools(svc) {
			up, n = up+reachableOf(p.backends), n+len(p.backends)
		}
		counts := fmt.Sprintf("%d active, %d total", svc.ActiveConnections, svc.TotalConnections)
		if svc.ActiveFlows != nil && svc.TotalFlows != nil {
			counts = fmt.Sprintf("%d active flows, %d total flows", *svc.ActiveFlows, *svc.TotalFlows)
		}
		r.item(fmt.Sprintf("%s %s %s: %d/%d backends reachable, %s, protection %s",
			svc.Name, svc.Protocol, net.JoinHostPort(svc.BindAddress, strconv.Itoa(svc.Port)), up, n,
			counts, protectionWord(svc.ProtectionMode)))
		if !verbose {
			continue
		}
		r.detail("listen", orDash(svc.Listen))
		r.detail("method", svc.Method)
		if svc.Datagrams != nil {
			r.detail("datagrams", fmt.Sprintf("client_to_backend=%d backend_to_client=%d", svc.Datagrams.ClientToBackend, svc.Datagrams.BackendToClient))
			r.detail("dropped", countsLine(svc.Dropped, engine.UDPDropNames()))
			if svc.MaxUDPFlows != nil {
				r.detail("max_udp_flows", strconv.Itoa(*svc.MaxUDPFlows))
			}
		} else {
			r.detail("rejected", countsLine(svc.RejectedConnections, rejectReasonNames()))
		}
		if len(svc.Routes) > 0 {
			r.detail("inspect", countsLine(svc.InspectResults, inspectResultNames()))
		}
		r.detail("bytes", fmt.Sprintf("client_to_backend=%d backend_to_client=%d", svc.Bytes.ClientToBackend, svc.Bytes.BackendToClient))
		r.detail("last_check_time", timeOrDash(svc.LastCheckTime))
		if svc.DrainingListeners > 0 {
			r.detail("draining_listeners", strconv.Itoa(svc.DrainingListeners))
		}
		for _, rt := range svc.Routes {
			r.detail("route", fmt.Sprintf("%s match(%s) method=%s matched=%d", rt.Name, rt.Match.String(), rt.Method, rt.MatchedTotal))
		}
		for _, p := range pools(svc) {
			for _, b := range p.backends {
				r.detail("backend", p.name+" "+backendLine(b))
			}
		}
	}
	if verbose && len(sum.degraded) > 0 {
		if sum.reachable == 0 {
			r.field("hint", "no reachable backend. Run 'bal doctor' and verify backend host/port/firewall")
		} else {
			r.field("hint", "partial backend reachability detected: "+strings.Join(sum.degraded, "; "))
		}
	}
	if res.fault.what != "" {
		r.problem(res.fault)
	} else {
		r.next("continue monitoring with 'bal status'")
	}
}

// outOfService counts the pool backends an operator took out: "1 drain,
// 2 maint"; "" when every backend is ready.
func outOfService(st *control.Status) string {
	n := map[string]int{}
	count := func(bs []control.Backend) {
		for _, b := range bs {
			if b.AdminState != "" && b.AdminState != "ready" {
				n[b.AdminState]++
			}
		}
	}
	if len(st.Services) == 0 {
		count(st.Backends)
	}
	for _, svc := range st.Services {
		count(svc.Backends)
		for _, r := range svc.Routes {
			count(r.Backends)
		}
	}
	var parts []string
	for _, state := range []string{"drain", "maint"} {
		if n[state] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n[state], state))
		}
	}
	return strings.Join(parts, ", ")
}

// backendLine is one backend of the human report.
func backendLine(b control.Backend) string {
	counts := fmt.Sprintf("active=%d total=%d", b.ActiveConnections, b.TotalConnections)
	if b.ActiveFlows != nil { // a UDP service's backend
		counts = fmt.Sprintf("active_flows=%d total_flows=%d", *b.ActiveFlows, b.TotalConnections)
	}
	line := fmt.Sprintf("%s reachable=%v weight=%d %s last_check=%s counters(timeout=%d, refused=%d, other=%d)",
		b.Address, b.Reachable, b.Weight, counts, timeOrDash(b.LastCheckTime),
		b.Counters.Timeout, b.Counters.Refused, b.Counters.Other)
	if b.CooldownUntil != nil {
		line += " cooldown_until=" + b.CooldownUntil.Format(time.RFC3339Nano)
	}
	if b.AdminState != "" && b.AdminState != "ready" {
		line += " admin=" + b.AdminState
	}
	if b.LastCheckError != nil {
		line += " last_check_error=" + strconv.Quote(*b.LastCheckError)
	}
	return line
}

// countsLine is "a=1 b=0 ..." in the order of names, then any name the
// daemon sent that this bal does not know.
func countsLine(counts map[string]uint64, names []string) string {
	parts := make([]string, 0, len(counts))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s=%d", n, counts[n]))
	}
	var extra []string
	for n := range counts {
		if !slices.Contains(names, n) {
			extra = append(extra, n)
		}
	}
	slices.Sort(extra)
	for _, n := range extra {
		parts = append(parts, fmt.Sprintf("%s=%d", n, counts[n]))
	}
	return strings.Join(parts, " ")
}

func rejectReasonNames() []string {
	var out []string
	for _, r := range engine.RejectReasons() {
		out = append(out, string(r))
	}
	return out
}

func inspectResultNames() []string {
	var out []string
	for _, r := range engine.InspectResults() {
		out = append(out, r.String())
	}
	return out
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339Nano)
}

// lastReloadLine is "ok at TIME (N changes)" or "rejected at TIME: ERROR".
func lastReloadLine(r *control.Reload) string {
	switch {
	case r == nil:
		return "none"
	case r.OK && len(r.Changes) == 0:
		return "ok at " + r.Time.Format(time.RFC3339) + " (no changes)"
	case r.OK:
		return "ok at " + r.Time.Format(time.RFC3339) + ": " + strings.Join(r.Changes, "; ")
	}
	msg := "rejected at " + r.Time.Format(time.RFC3339)
	if r.Error != nil {
		msg += ": " + *r.Error
	}
	return msg
}
