package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bal-lb/bal/engine/adminstate"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/control"
	"github.com/bal-lb/bal/engine/logfile"
	"github.com/bal-lb/bal/engine/metrics"
	"github.com/bal-lb/bal/engine/pidfile"
	"github.com/bal-lb/bal/engine/sdnotify"
	"github.com/bal-lb/bal/engine/server"
)

// rootWarning is logged once when bal starts as root.
const rootWarning = "running as root: bal needs no privileges; run it as a dedicated user"

// Files inside $BAL_HOME (docs/operations.md#files).
const (
	pidFileName = "bal.pid"
	sockName    = "bal.sock"
	logFileName = "bal.log"
	// stateFileName holds the backends' admin states (bal backend drain ...).
	stateFileName = adminstate.FileName
)

// loadForStart finds the config for bal start: -c as given (it must exist),
// else the lookup order (docs/configuration.md#file-lookup), writing the default file into $BAL_HOME
// when no file exists anywhere.
func loadForStart(e *env, flagPath string) (*config.Snapshot, string, error) {
	home, err := config.Home()
	if err != nil {
		return nil, "", err
	}
	path, err := config.Resolve(flagPath)
	if err != nil {
		return nil, home, err
	}
	if flagPath == "" {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			if err := ensureHome(home); err != nil {
				return nil, home, err
			}
			if path, err = config.WriteDefault(home); err != nil {
				return nil, home, fmt.Errorf("write the default config: %w", err)
			}
			fmt.Fprintf(e.stderr, "bal start: no config file found; wrote the default to %s\n", path)
		}
	}
	snap, err := config.Load(path)
	if err != nil {
		return nil, home, err
	}
	return snap, home, nil
}

// serveForeground is bal start without -d: logs on stderr, PID file and
// control socket, drain on SIGTERM/SIGINT, reload on SIGHUP.
func serveForeground(e *env, flagPath string) int {
	snap, home, err := loadForStart(e, flagPath)
	if err != nil {
		fmt.Fprintf(e.stderr, "bal start: %v\n", err)
		return exitFail
	}
	level := new(slog.LevelVar)
	in := &instance{
		home:  home,
		snap:  snap,
		log:   slog.New(slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: level})),
		level: level,
	}
	code, err := in.run()
	if err != nil {
		fmt.Fprintf(e.stderr, "bal start: %v\n", err)
	}
	return code
}

// instance is one running bal, in the foreground or as the daemon.
type instance struct {
	home  string
	snap  *config.Snapshot
	log   *slog.Logger
	level *slog.LevelVar
	// logFile is the daemon's $BAL_HOME/bal.log, reopened on SIGUSR1; nil
	// in the foreground (logs go to stderr).
	logFile *logfile.File
	// ready, when set, is called once: when bal listens and its control
	// socket answers (the daemon tells its parent).
	ready func(server.Status)
}

// run serves until bal is stopped and returns the exit code. A non-nil
// error means bal could not start (the code is then exitFail); it is not
// logged, the caller reports it.
func (in *instance) run() (int, error) {
	if err := ensureHome(in.home); err != nil {
		return exitFail, err
	}
	pidPath := filepath.Join(in.home, pidFileName)
	pid, err := pidfile.Acquire(pidPath)
	if err != nil {
		return exitFail, err
	}
	defer pid.Remove()

	if os.Geteuid() == 0 {
		hint := "nothing in bal needs root: use a dedicated user (User= in the systemd unit)"
		if lowPort(in.snap) {
			hint = "a port below 1024 needs only CAP_NET_BIND_SERVICE (AmbientCapabilities= in the systemd unit), not root"
		}
		in.log.Warn(rootWarning, "uid", 0, "hint", hint)
	}

	// Signals are caught before the listener exists so that an early
	// SIGTERM still drains instead of killing the process.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigs)

	// The status page on metrics_address is the control server's read-only
	// part; the control server needs the server first, so the listener
	// reaches it through web, set before Start opens the listener.
	var web http.Handler
	srv := server.New(in.snap, server.Options{
		Engines:   selectEngine,
		Logger:    in.log,
		Level:     in.level,
		Metrics:   func(status func() server.Status) http.Handler { return metrics.Handler(status, buildVersion()) },
		Web:       http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { web.ServeHTTP(w, r) }),
		StatePath: filepath.Join(in.home, stateFileName),
	})
	d := &notifyingDaemon{Server: srv}
	ctl := control.New(d, control.Options{Version: buildVersion(), Logger: in.log, Metrics: srv.MetricsHandler()})
	web = ctl.WebHandler()
	if err := srv.Start(context.Background()); err != nil {
		_ = srv.Close()
		return exitFail, err
	}
	ln, err := control.Listen(filepath.Join(in.home, sockName), in.log)
	if err != nil {
		_ = srv.Close()
		return exitFail, err
	}
	ctlDone := make(chan error, 1)
	go func() { ctlDone <- ctl.Serve(ln) }()
	defer func() {
		_ = ctl.Close()
		<-ctlDone
		_ = ln.Close() // removes bal.sock
	}()

	st := srv.Status()
	listens := make([]string, 0, len(st.Services))
	for _, ss := range st.Services {
		listens = append(listens, ss.Listen.String())
		in.log.Info("service listening", "service", ss.Name, "protocol", string(ss.Protocol), "listen", ss.Listen.String(),
			"method", string(ss.Policy.Method), "pools", len(ss.Policy.Pools))
	}
	in.log.Info("bal started", "pid", os.Getpid(), "version", buildVersion(), "config", in.snap.Path,
		"listen", st.Listen.String(), "engine", st.Engine, "method", st.Method, "backends", len(st.Policy.DefaultBackends()),
		"services", len(st.Services), "control", ln.Path())
	in.notify(sdnotify.Ready, sdnotify.MainPID(os.Getpid()), sdnotify.Status("listening on "+strings.Join(listens, ", ")+" ("+st.Engine+")"))
	if in.ready != nil {
		in.ready(st)
	}

	for {
		select {
		case err := <-srv.Fatal():
			in.log.Error("stopping: cannot serve", "error", err.Error())
			in.notify(sdnotify.Stopping)
			_ = srv.Close()
			return exitFail, nil
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				_, _ = d.ReloadFile(context.Background())
			case syscall.SIGUSR1:
				in.reopenLog()
			default:
				in.notify(sdnotify.Stopping)
				ctl.SetState(control.StateDraining)
				return in.shutdown(srv, sig, sigs), nil
			}
		}
	}
}

// shutdown drains for drain_timeout_ms; a second SIGTERM/SIGINT closes
// everything at once and exits 1.
func (in *instance) shutdown(srv *server.Server, sig os.Signal, sigs <-chan os.Signal) int {
	drain := srv.Snapshot().Runtime.DrainTimeout
	var active int64
	for _, ss := range srv.Status().Services {
		active += ss.Policy.Active
	}
	in.log.Info("shutting down: no new connections; draining", "signal", sig.String(), "drain_timeout_ms", drain.Milliseconds(), "active", active)
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	done := make(chan struct{})
	go func() {
		_ = srv.Shutdown(ctx)
		close(done)
	}()
	for {
		select {
		case <-done:
			in.log.Info("bal stopped")
			return exitOK
		case s := <-sigs:
			switch s {
			case syscall.SIGHUP:
				continue // no reloads while draining
			case syscall.SIGUSR1:
				in.reopenLog()
				continue
			}
			in.log.Warn("second signal: closing every connection now", "signal", s.String())
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
			}
			return exitFail
		}
	}
}

// lowPort reports whether a service listens on a port below 1024.
func lowPort(snap *config.Snapshot) bool {
	for _, svc := range snap.Services {
		if svc.Port < 1024 {
			return true
		}
	}
	return false
}

// reopenLog reopens bal.log after logrotate renamed it (SIGUSR1).
func (in *instance) reopenLog() {
	if in.logFile == nil {
		in.log.Debug("SIGUSR1: no log file to reopen (logging to stderr)")
		return
	}
	if err := in.logFile.Reopen(); err != nil {
		in.log.Error("cannot reopen the log file; still writing to the old one", "path", in.logFile.Path(), "error", err.Error())
		return
	}
	_ = in.logFile.DupTo(2) // stderr follows (crash reports)
	in.log.Info("log file reopened", "path", in.logFile.Path())
}

// notify tells systemd (Type=notify) about a state change; it does nothing
// unless NOTIFY_SOCKET is set.
func (in *instance) notify(states ...string) {
	if _, err := sdnotify.Notify(states...); err != nil {
		in.log.Warn("sd_notify failed", "error", err.Error())
	}
}

// notifyingDaemon is the server as the control socket and SIGHUP see it: a
// reload is announced to systemd (RELOADING=1, then READY=1).
type notifyingDaemon struct {
	*server.Server
}

func (d *notifyingDaemon) ReloadFile(ctx context.Context) (*server.ReloadResult, error) {
	_, _ = sdnotify.Notify(sdnotify.Reloading())
	r, err := d.Server.ReloadFile(ctx)
	st := "reloaded"
	if err != nil {
		st = "reload rejected; the previous configuration keeps serving"
	}
	_, _ = sdnotify.Notify(sdnotify.Ready, sdnotify.Status(st))
	return r, err
}
