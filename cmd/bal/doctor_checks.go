package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/control"
	"github.com/bal-lb/bal/engine/health"
	"github.com/bal-lb/bal/engine/limits"
	"github.com/bal-lb/bal/engine/pidfile"
	"github.com/bal-lb/bal/engine/server"
)

// The checks of bal doctor: each adds one entry to the document, from the
// running bal's view when one answers, else from this host and the config
// file. The command itself (flags, output) is cmd_doctor.go.

// Check levels (docs/operations.md#bal-doctor).
const (
	checkOK       = "ok"
	checkWarn     = "warn"
	checkCritical = "critical"
)

// diagnosis is the state the checks share.
type diagnosis struct {
	f    *found
	live *control.Status
	path string           // the config file: the running bal's, else as resolved
	snap *config.Snapshot // the file on disk, nil when it does not load
	err  error            // why it does not load
	res  *doctorJSON
}

func (d *diagnosis) add(name, level, summary, hint string) {
	c := doctorCheck{Name: name, Level: level, Summary: summary}
	if hint != "" {
		c.Hint = &hint
	}
	d.res.Checks = append(d.res.Checks, c)
}

// doctor runs every check, in the documented order (docs/operations.md#bal-doctor).
func doctor(ctx context.Context, flagPath string) *doctorJSON {
	f := findInstance(ctx)
	d := &diagnosis{f: f, live: f.live, res: &doctorJSON{Checks: []doctorCheck{}}}
	d.res.Running = f.running()
	if f.running() {
		d.res.PID = &f.pid
	}
	if d.live != nil {
		d.path = d.live.ConfigPath
		d.res.ProtectionMode = protectionJSON{Enabled: d.live.ProtectionMode.Enabled, Reason: d.live.ProtectionMode.Reason}
	} else {
		d.path, d.err = config.Resolve(flagPath)
	}
	if d.err == nil {
		d.snap, d.err = config.Load(d.path)
	}
	d.res.ConfigPath = d.path

	d.checkPID()
	d.checkConfig()
	d.checkBind(ctx)
	d.checkBackends(ctx)
	d.checkLimits()
	d.checkControl()

	d.res.Overall = levelOK
	for _, c := range d.res.Checks {
		switch c.Level {
		case checkCritical:
			d.res.Critical++
		case checkWarn:
			d.res.Warnings++
		}
	}
	switch {
	case d.res.Critical > 0:
		d.res.Overall = levelFailed
	case d.res.Warnings > 0:
		d.res.Overall = levelWarn
	}
	return d.res
}

// checkPID: $BAL_HOME's safety and the PID file's consistency.
func (d *diagnosis) checkPID() {
	f := d.f
	if f.home == "" {
		d.add("pid", checkCritical, "cannot locate bal's home: "+f.pidErr.Error(), "set BAL_HOME")
		return
	}
	if level, summary, hint := homeSafety(f.home); level != checkOK {
		d.add("pid", level, summary, hint)
		return
	}
	if is := checkHomeFile(f.pidPath, 0); is != nil {
		d.add("pid", is.level, "unsafe pid file: "+is.summary, is.hint)
		return
	}
	pid, err := pidfile.Read(f.pidPath)
	switch {
	case errors.Is(err, fs.ErrNotExist) && d.live == nil:
		d.add("pid", checkOK, "pid file absent and no daemon running", "")
	case errors.Is(err, fs.ErrNotExist):
		d.add("pid", checkWarn, fmt.Sprintf("bal runs (PID %d) but its pid file %s is missing", d.live.PID, f.pidPath),
			"restart it ('bal stop', then 'bal start -d') to write it again")
	case errors.Is(err, pidfile.ErrUnsafe):
		d.add("pid", checkCritical, err.Error(), "remove "+f.pidPath+" (bal never follows or writes through it)")
	case err != nil:
		d.add("pid", checkCritical, "cannot read pid file: "+err.Error(), "fix or remove the corrupted pid file: "+f.pidPath)
	case d.live != nil && pid != d.live.PID:
		d.add("pid", checkWarn, fmt.Sprintf("pid file names PID %d but the running bal is PID %d", pid, d.live.PID),
			"restart bal ('bal stop', then 'bal start -d')")
	case gone(pid):
		d.add("pid", checkCritical, fmt.Sprintf("stale pid file detected (PID %d is dead)", pid),
			"remove the stale pid file "+f.pidPath+" ('bal start' also replaces it)")
	case !pidfile.IsBal(pid):
		d.add("pid", checkCritical, fmt.Sprintf("stale pid file detected (PID %d is alive but is not bal)", pid),
			"remove the stale pid file "+f.pidPath+" ('bal start' also replaces it); bal never signals that process")
	case d.live == nil && f.pidErr != nil:
		// A live bal that does not hold this file's lock: the PID was
		// reused, or that bal serves another BAL_HOME.
		d.add("pid", checkCritical, fmt.Sprintf("stale pid file detected (PID %d is a bal that does not hold it: its PID was reused, or it serves another BAL_HOME)", pid),
			"remove the stale pid file "+f.pidPath+" ('bal start' also replaces it); bal never signals that process")
	default:
		summary := fmt.Sprintf("pid file is consistent (PID: %d)", pid)
		if fi, err := os.Lstat(f.pidPath); err == nil && fi.Mode().Perm()&0o022 != 0 {
			d.add("pid", checkWarn, summary+fmt.Sprintf(", but it is writable by others (mode %04o)", fi.Mode().Perm()), "chmod 644 "+f.pidPath)
			return
		}
		d.add("pid", checkOK, summary, "")
	}
}

// homeSafety flags a $BAL_HOME others could write to or that is not ours,
// and a bal.log that bal would refuse to open (a link, not a plain file,
// another owner's).
func homeSafety(home string) (level, summary, hint string) {
	is := checkHomeDir(home, true)
	if is == nil || is.level != checkCritical {
		if lis := checkHomeFile(filepath.Join(home, logFileName), 0); lis != nil {
			lis.summary = "unsafe log file: " + lis.summary
			is = lis
		}
	}
	if is == nil {
		return checkOK, "", ""
	}
	return is.level, is.summary, is.hint
}

// checkConfig: the file loads; with a running bal, it is the file that bal
// loaded, and a change pending for 'bal graceful' is reported.
func (d *diagnosis) checkConfig() {
	switch {
	case d.live == nil && errors.Is(d.err, config.ErrNotFound):
		d.add("config", checkCritical, "config file not found: "+d.path,
			"create a config file at "+d.path+" ('bal start' writes a default) or pass '-c FILE'")
	case d.live == nil && d.err != nil:
		d.add("config", checkCritical, "failed to load config: "+d.err.Error(), "run 'bal check --verbose' and fix the listed errors")
	case d.err != nil:
		d.add("config", checkWarn, fmt.Sprintf("bal runs with %s, but the file on disk would be rejected by 'bal graceful': %v", d.path, d.err),
			"fix it ('bal check --verbose') before the next reload or restart")
	case d.live != nil && d.live.LastReload != nil && !d.live.LastReload.OK:
		d.add("config", checkWarn, "the last reload was rejected; the file on disk loads now", "run 'bal graceful' to apply it")
	case d.live != nil:
		if pending := d.snap.Changes(runningSnapshot(d.live, d.snap)); len(pending) > 0 {
			d.add("config", checkWarn, fmt.Sprintf("loaded %s; the file changed since: %s", d.path, strings.Join(pending, "; ")),
				"run 'bal graceful' to apply it")
			return
		}
		d.add("config", checkOK, "loaded "+d.path+" (the running bal's config)", "")
	default:
		summary := "loaded " + d.path
		if n := len(d.snap.Warnings); n > 0 {
			summary += fmt.Sprintf(" (%d warnings: see 'bal check --verbose')", n)
		}
		d.add("config", checkOK, summary, "")
	}
}

// runningSnapshot is the config the running bal reports in its status, as a
// Snapshot to compare with the file on disk (Snapshot.Changes). The status
// carries the mode, listener, method, log level, backends and some runtime
// keys; the others are taken from disk, so they never show as a change.
func runningSnapshot(st *control.Status, disk *config.Snapshot) *config.Snapshot {
	s := *disk
	s.Port, s.BindAddress, s.Method = st.Port, st.BindAddress, config.Method(st.Method)
	if st.Mode != "" {
		s.Mode = config.Mode(st.Mode)
	}
	var level slog.Level
	if level.UnmarshalText([]byte(st.LogLevel)) == nil {
		s.LogLevel = level
	}
	s.Backends = make([]config.Backend, 0, len(st.Backends))
	for _, b := range st.Backends {
		host, port, err := net.SplitHostPort(b.Address)
		n, nerr := strconv.Atoi(port)
		if err != nil || nerr != nil {
			continue // not "host:port": nothing to compare it with
		}
		s.Backends = append(s.Backends, config.Backend{Host: host, Port: n, Weight: b.Weight})
	}
	s.Runtime.MaxConcurrentConnections = st.MaxConcurrentConnections
	s.Runtime.TCPBacklog = st.TCPBacklog
	s.Runtime.DrainTimeout = time.Duration(st.DrainTimeoutMS) * time.Millisecond
	s.Runtime.AccessLog = st.AccessLog
	// The first service is what the top-level status fields describe.
	s.Services = slices.Clone(disk.Services)
	if len(s.Services) > 0 {
		first := &s.Services[0]
		first.Port, first.BindAddress, first.Method, first.Backends = s.Port, s.BindAddress, s.Method, s.Backends
		rt := &first.Runtime
		rt.MaxConcurrentConnections, rt.TCPBacklog, rt.DrainTimeout, rt.AccessLog = st.MaxConcurrentConnections, st.TCPBacklog, s.Runtime.DrainTimeout, st.AccessLog
	}
	return &s
}

// checkBind: the listen address is bindable, or held by the running bal.
func (d *diagnosis) checkBind(ctx context.Context) {
	if d.live != nil {
		held := fmt.Sprintf("%s is held by the running bal (PID %d)", d.live.Listen, d.live.PID)
		if d.snap == nil || net.JoinHostPort(d.live.BindAddress, strconv.Itoa(d.live.Port)) == d.snap.ListenAddress() {
			d.add("bind", checkOK, held, "")
			return
		}
		// The file moves the listener: would 'bal graceful' bind it?
		addr, err := server.ListenAddr(ctx, d.snap)
		if err == nil {
			err = engine.ProbeBind(addr)
		}
		if err != nil {
			d.add("bind", checkCritical, held+"; the config file's "+d.snap.ListenAddress()+" cannot be bound: "+err.Error(),
				"free the address or change bind_address/port before 'bal graceful'")
			return
		}
		d.add("bind", checkOK, held+"; the config file's "+d.snap.ListenAddress()+" is bindable", "")
		return
	}
	if d.snap == nil {
		d.add("bind", checkWarn, "not checked: the config does not load", "fix the config first")
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addr, err := server.ListenAddr(rctx, d.snap)
	if err != nil {
		d.add("bind", checkCritical, "cannot resolve the listen address: "+err.Error(), "set a valid IP or hostname in 'bind_address'")
		return
	}
	err = engine.ProbeBind(addr)
	switch {
	case err == nil:
		d.add("bind", checkOK, addr.String()+" is bindable", "")
	case errors.Is(err, engine.ErrAddrInUse) && d.f.running():
		d.add("bind", checkCritical, fmt.Sprintf("%s is in use; bal (PID %d) runs but does not answer on its control socket", addr, d.f.pid),
			"restart it ('bal stop', then 'bal start -d')")
	case errors.Is(err, engine.ErrAddrInUse):
		d.add("bind", checkCritical, addr.String()+" is already in use by another process",
			"stop the conflicting process or change bind_address/port in the config")
	case errors.Is(err, syscall.EACCES) && addr.Port() < 1024:
		d.add("bind", checkCritical, "cannot bind "+addr.String()+": "+err.Error(),
			"ports below 1024 need root or CAP_NET_BIND_SERVICE (AmbientCapabilities= in the systemd unit); or use a port ≥ 1024")
	default:
		d.add("bind", checkCritical, "cannot bind "+addr.String()+": "+err.Error(), "check bind_address: it must be an address of this host")
	}
}

// checkBackends: the running bal's view of its backends, else a probe.
func (d *diagnosis) checkBackends(ctx context.Context) {
	if d.live != nil {
		var down []string
		for _, b := range d.live.Backends {
			if !b.Reachable {
				down = append(down, b.Address)
			}
		}
		summary := fmt.Sprintf("reachable %d/%d (the running bal's health checks)", d.live.BackendReachable, d.live.BackendTotal)
		d.backendVerdict(summary, d.live.BackendReachable, d.live.BackendTotal, nil, down)
		return
	}
	if d.snap == nil {
		d.add("backend", checkWarn, "not checked: the config does not load", "fix the config first")
		return
	}
	timeout := min(d.snap.Runtime.HealthCheckTimeout, 2*time.Second)
	var unresolved, down []string
	resolved, reachable := 0, 0
	for i, err := range health.Probe(ctx, d.snap.Backends, timeout, health.Options{}) {
		addr := d.snap.Backends[i].Address()
		var re *health.ResolveError
		switch {
		case errors.As(err, &re):
			unresolved = append(unresolved, addr)
		case err != nil:
			resolved++
			down = append(down, addr)
		default:
			resolved++
			reachable++
		}
	}
	n := len(d.snap.Backends)
	summary := fmt.Sprintf("resolvable %d/%d | reachable %d/%d (probed by doctor, timeout %v)", resolved, n, reachable, n, timeout)
	d.backendVerdict(summary, reachable, n, unresolved, down)
}

func (d *diagnosis) backendVerdict(summary string, reachable, total int, unresolved, down []string) {
	switch {
	case total > 0 && reachable == 0:
		d.add("backend", checkCritical, summary, "no backend is reachable: verify backend host/port, the service and the network path")
	case reachable < total:
		var parts []string
		if len(unresolved) > 0 {
			parts = append(parts, "Unresolved: "+strings.Join(unresolved, ", "))
		}
		if len(down) > 0 {
			parts = append(parts, "Unreachable: "+strings.Join(down, ", "))
		}
		d.add("backend", checkWarn, summary, strings.Join(parts, "; ")+" | check DNS/firewall/service health")
	default:
		d.add("backend", checkOK, summary, "")
	}
}

// checkLimits: RLIMIT_NOFILE against max_concurrent_connections, and
// tcp_backlog against somaxconn — the running bal's own, else this host's.
func (d *diagnosis) checkLimits() {
	var (
		eng            string
		maxConns, blog int
		nofile         uint64
		somaxconn      int
		somaxconnKnown bool
		source         = "this host"
	)
	switch {
	case d.live != nil:
		eng, maxConns, blog = d.live.Engine, d.live.MaxConcurrentConnections, d.live.TCPBacklog
		nofile, somaxconn = d.live.Limits.NoFileSoft, d.live.Limits.Somaxconn
		somaxconnKnown = somaxconn > 0
		source = "the running bal"
	case d.snap != nil:
		name := d.snap.Runtime.Engine
		e, err := selectEngine(name)
		if err == nil {
			name = e.Name
		}
		eng, maxConns, blog = name, d.snap.Runtime.MaxConcurrentConnections, d.snap.Runtime.TCPBacklog
		// Go raises the soft limit to the hard one at start-up: this
		// process has what a bal started here would have.
		nofile, _, _ = limits.NoFile()
		somaxconn, err = limits.Somaxconn()
		somaxconnKnown = err == nil
	default:
		d.add("limits", checkWarn, "not checked: the config does not load", "fix the config first")
		return
	}
	cost := engineCost(eng)
	need := cost.Needed(maxConns)
	var warns, hints []string
	fdPart := fmt.Sprintf("nofile %d (max_concurrent_connections %d x %d fds on %s + %d = %d)", nofile, maxConns, cost.PerConn, eng, need-uint64(maxConns*cost.PerConn), need)
	if nofile < need {
		warns = append(warns, fmt.Sprintf("RLIMIT_NOFILE %d is below the %d descriptors max_concurrent_connections %d needs", nofile, need, maxConns))
		hints = append(hints, fmt.Sprintf("raise the open-file limit to ≥ %d (LimitNOFILE= in the systemd unit, ulimit -n) or lower max_concurrent_connections; past it bal resets new connections", need))
	}
	var backlogPart string
	switch {
	case !somaxconnKnown:
		backlogPart = fmt.Sprintf("tcp_backlog %d (somaxconn unknown)", blog)
	case blog == 0:
		backlogPart = fmt.Sprintf("tcp_backlog somaxconn (%d)", somaxconn)
	case blog > somaxconn:
		backlogPart = fmt.Sprintf("tcp_backlog %d > somaxconn %d", blog, somaxconn)
		warns = append(warns, fmt.Sprintf("tcp_backlog %d is above net.core.somaxconn %d: the kernel caps it", blog, somaxconn))
		hints = append(hints, fmt.Sprintf("raise it (sysctl -w net.core.somaxconn=%d) or lower tcp_backlog", blog))
	default:
		backlogPart = fmt.Sprintf("tcp_backlog %d (somaxconn %d)", blog, somaxconn)
	}
	summary := fdPart + " | " + backlogPart + " [" + source + "]"
	if len(warns) > 0 {
		d.add("limits", checkWarn, strings.Join(warns, "; ")+" | "+summary, strings.Join(hints, "; "))
		return
	}
	d.add("limits", checkOK, summary, "")
}

// checkControl: the control socket answers (and is private).
func (d *diagnosis) checkControl() {
	f := d.f
	switch {
	case f.home == "":
		d.add("control", checkWarn, "not checked: no home directory", "set BAL_HOME")
	case d.live != nil:
		summary := fmt.Sprintf("%s answers (PID %d, %s)", f.sockPath, d.live.PID, d.live.State)
		if fi, err := os.Lstat(f.sockPath); err == nil && fi.Mode().Perm() != control.SocketMode {
			d.add("control", checkWarn, summary+fmt.Sprintf(", but its mode is %04o", fi.Mode().Perm()), "chmod 600 "+f.sockPath+" (bal creates it 0600)")
			return
		}
		d.add("control", checkOK, summary, "")
	case f.running():
		d.add("control", checkCritical, fmt.Sprintf("bal (PID %d) runs but %s does not answer: %v", f.pid, f.sockPath, f.liveErr),
			"restart it ('bal stop', then 'bal start -d')")
	default:
		if is := checkHomeFile(f.sockPath, fs.ModeSocket); is != nil {
			d.add("control", is.level, "unsafe control socket path (bal is not running): "+is.summary, is.hint)
			return
		}
		summary := "bal is not running (no control socket)"
		if fi, err := os.Lstat(f.sockPath); err == nil && fi.Mode().Type() == fs.ModeSocket {
			summary = "bal is not running; a stale " + f.sockPath + " is left ('bal start' replaces it)"
		}
		d.add("control", checkWarn, summary, "start it with 'bal start -d'")
	}
}
