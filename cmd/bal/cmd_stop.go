package main

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/bal-lb/bal/engine/pidfile"
	"github.com/spf13/pflag"
)

// stopOptions are the flags of bal stop.
type stopOptions struct {
	timeout time.Duration // 0: the running drain timeout + 5 s
}

// Default wait of bal stop when the running drain timeout is unknown (the
// control socket does not answer): the default drain timeout + 5 s.
const defaultStopTimeout = 35 * time.Second

// stopPoll is how often bal stop looks whether the process has exited.
const stopPoll = 25 * time.Millisecond

func stopCommand() *command {
	o := &stopOptions{}
	return &command{
		name:    "stop",
		summary: "stop the running instance and wait until it has exited",
		usage:   "[--timeout DURATION]",
		help: `
Send SIGTERM to the bal of $BAL_HOME and wait until it has exited: it stops
accepting at once and lets open connections finish for up to
drain_timeout_ms. At the timeout the process is left running and bal stop
says so; a second bal stop then closes every connection at once.

A PID file naming a process that is not bal is never signalled.

Exit codes: 0 stopped; 1 not running, or still alive at the timeout.`,
		flags: func(fs *pflag.FlagSet) {
			fs.DurationVar(&o.timeout, "timeout", 0, "wait up to `DURATION`, Go syntax: 10s, 1m (default: the running drain timeout + 5s)")
		},
		run: func(e *env) int { return runStop(e, o) },
	}
}

func runStop(e *env, o *stopOptions) int {
	if o.timeout < 0 {
		return usageError(e, "bal stop", "--timeout must not be negative", "bal stop --help")
	}
	f := findInstance(context.Background())
	if !f.running() {
		fmt.Fprintf(e.stderr, "bal stop: %s\n", f.notRunningReason())
		return exitFail
	}
	pid := f.pid
	// The PID comes from the control socket's answer or from a PID file
	// that names a live bal; check again right before signalling, so an
	// unrelated process is never signalled.
	if !pidfile.IsBal(pid) {
		fmt.Fprintf(e.stderr, "bal stop: %v (PID %d is not bal)\n", pidfile.ErrNotRunning, pid)
		return exitFail
	}
	timeout := o.timeout
	if timeout == 0 {
		timeout = defaultStopTimeout
		if f.live != nil {
			timeout = time.Duration(f.live.DrainTimeoutMS)*time.Millisecond + 5*time.Second
		}
	}
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			fmt.Fprintf(e.stdout, "bal stop: stopped (PID %d had already exited)\n", pid)
			return exitOK
		}
		fmt.Fprintf(e.stderr, "bal stop: signal PID %d: %v\n", pid, err)
		return exitFail
	}
	if waitGone(pid, timeout) {
		fmt.Fprintf(e.stdout, "bal stop: stopped (PID %d) in %v\n", pid, time.Since(start).Round(time.Millisecond))
		return exitOK
	}
	fmt.Fprintf(e.stderr, "bal stop: PID %d is still running after %v (still draining open connections); it was left running. Run 'bal stop' again to close every connection at once, or wait longer with --timeout\n", pid, timeout)
	return exitFail
}

// waitGone polls until pid has exited (or is a zombie waiting for its
// parent) or timeout passes.
func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if gone(pid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(stopPoll)
	}
}

// gone reports that pid no longer runs (a zombie counts as gone).
func gone(pid int) bool { return !pidfile.Alive(pid) }
