package main

import (
	"context"
	"fmt"
	"strings"
	"time"

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
	fault            triplet         // the human report's problem, if any
	live             *control.Status // nil when not running or not answering
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
	Addresses     []string         `json:"addresses"` // resolved addresses, tried in order
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
	res := &statusJSON{Backends: []statusBackend{}, Overall: levelFailed}
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

	res.Overall = levelWarn
	switch {
	case st.State == control.StateDraining:
		res.fault = triplet{
			what: "daemon is shutting down",
			why:  "it was asked to stop: no new connections, open ones are finishing",
			do:   "wait for it to exit ('bal stop' waits), then start it again if needed",
		}
	case st.BackendTotal > 0 && st.BackendReachable == 0:
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
	case st.ProtectionMode.Enabled:
		res.fault = triplet{
			what: "protection mode is on (" + reasonOr(st.ProtectionMode.Reason) + ")",
			why:  "backends are timing out or refusing connections; failover backs off harder",
			do:   "run 'bal doctor --verbose' and recover the failing backends",
		}
	case st.BackendReachable < st.BackendTotal:
		res.fault = triplet{
			what: "some backends are unreachable",
			why:  "partial outage or uneven backend health",
			do:   "run 'bal doctor --verbose' and recover failing backends",
		}
	default:
		res.Overall = levelOK
	}
	return res
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
	s := fmt.Sprintf("running pid=%d on %s (%s), %d/%d backends reachable, %d active connections, protection %s",
		st.PID, st.Listen, st.Engine, st.BackendReachable, st.BackendTotal, st.ActiveConnections, protectionWord(st.ProtectionMode))
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
	r.field("backends", fmt.Sprintf("%d/%d reachable", st.BackendReachable, st.BackendTotal))
	r.field("connections", fmt.Sprintf("%d active, %d total", st.ActiveConnections, st.TotalConnections))
	r.field("protection_mode", protectionWord(st.ProtectionMode))
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
			line := fmt.Sprintf("%s reachable=%v weight=%d active=%d total=%d last_check=%s counters(timeout=%d, refused=%d, other=%d)",
				b.Address, b.Reachable, b.Weight, b.ActiveConnections, b.TotalConnections, timeOrDash(b.LastCheckTime),
				b.Counters.Timeout, b.Counters.Refused, b.Counters.Other)
			if b.CooldownUntil != nil {
				line += " cooldown_until=" + b.CooldownUntil.Format(time.RFC3339Nano)
			}
			lines = append(lines, line)
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
