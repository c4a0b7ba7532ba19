package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/pidfile"
	"github.com/bal-lb/bal/engine/server"
)

// Files of SPEC §4, inside $BAL_HOME.
const (
	pidFileName = "bal.pid"
	sockName    = "bal.sock"
	logFileName = "bal.log"
)

// loadForStart finds the config for bal start: -c as given (it must exist),
// else the lookup order of SPEC §1, writing the default file into $BAL_HOME
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

// ensureHome creates $BAL_HOME (0700) when it does not exist.
func ensureHome(home string) error {
	if err := os.MkdirAll(home, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", home, err)
	}
	return nil
}

// serveForeground is bal start without -d: logs on stderr, PID file, drain on
// SIGTERM/SIGINT, reload on SIGHUP.
func serveForeground(e *env, flagPath string) int {
	snap, home, err := loadForStart(e, flagPath)
	if err != nil {
		fmt.Fprintf(e.stderr, "bal start: %v\n", err)
		return exitFail
	}
	level := new(slog.LevelVar)
	log := slog.New(slog.NewJSONHandler(e.stderr, &slog.HandlerOptions{Level: level}))
	return serve(e, snap, home, log, level)
}

// serve runs one instance until it is stopped; it is shared by the
// foreground and the daemon.
func serve(e *env, snap *config.Snapshot, home string, log *slog.Logger, level *slog.LevelVar) int {
	if err := ensureHome(home); err != nil {
		fmt.Fprintf(e.stderr, "bal start: %v\n", err)
		return exitFail
	}
	pid, err := pidfile.Acquire(filepath.Join(home, pidFileName))
	if err != nil {
		fmt.Fprintf(e.stderr, "bal start: %v\n", err)
		return exitFail
	}
	defer pid.Remove()

	// Signals are caught before the listener exists so that an early
	// SIGTERM still drains instead of killing the process.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	srv := server.New(snap, server.Options{Logger: log, Level: level})
	if err := srv.Start(context.Background()); err != nil {
		_ = srv.Close()
		log.Error("cannot start", "error", err.Error())
		fmt.Fprintf(e.stderr, "bal start: %v\n", err)
		return exitFail
	}
	st := srv.Status()
	log.Info("bal started", "pid", os.Getpid(), "version", buildVersion(), "config", snap.Path,
		"listen", st.Listen.String(), "engine", st.Engine, "method", string(snap.Method), "backends", len(snap.Backends))

	for {
		select {
		case err := <-srv.Fatal():
			log.Error("stopping: cannot serve", "error", err.Error())
			_ = srv.Close()
			return exitFail
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				_, _ = srv.ReloadFile(context.Background())
				continue
			}
			return shutdown(srv, sig, sigs, log)
		}
	}
}

// shutdown drains for drain_timeout_ms; a second SIGTERM/SIGINT closes
// everything at once and exits 1.
func shutdown(srv *server.Server, sig os.Signal, sigs <-chan os.Signal, log *slog.Logger) int {
	drain := srv.Snapshot().Runtime.DrainTimeout
	log.Info("shutting down: no new connections; draining", "signal", sig.String(), "drain_timeout_ms", drain.Milliseconds(), "active", srv.Status().Policy.Active)
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
			log.Info("bal stopped")
			return exitOK
		case s := <-sigs:
			if s == syscall.SIGHUP {
				continue // no reloads while draining
			}
			log.Warn("second signal: closing every connection now", "signal", s.String())
			cancel()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
			}
			return exitFail
		}
	}
}
