package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/control"
	"github.com/bal-lb/bal/engine/pidfile"
)

// controlTimeout bounds one status request to the control socket.
const controlTimeout = 5 * time.Second

// found is what the CLI knows about the bal of $BAL_HOME: what its control
// socket answered, else what its PID file says.
type found struct {
	home     string
	sockPath string
	pidPath  string

	live    *control.Status // nil when the control socket did not answer
	liveErr error           // why it did not

	pid    int   // the running bal's PID (from live, else from the PID file); 0 if none
	pidErr error // why the PID file names no running bal (wraps pidfile.ErrNotRunning), nil if it does
}

// running reports whether a bal process runs for this home.
func (f *found) running() bool { return f.live != nil || f.pidErr == nil }

// findInstance asks the control socket of $BAL_HOME for the live status and
// reads the PID file. It never fails: an unknown home is "not running".
func findInstance(ctx context.Context) *found {
	f := &found{}
	home, err := config.Home()
	if err != nil {
		f.liveErr, f.pidErr = err, fmt.Errorf("%w: %w", pidfile.ErrNotRunning, err)
		return f
	}
	f.home = home
	f.sockPath = filepath.Join(home, sockName)
	f.pidPath = filepath.Join(home, pidFileName)
	ctx, cancel := context.WithTimeout(ctx, controlTimeout)
	defer cancel()
	f.live, f.liveErr = control.NewClient(f.sockPath, controlTimeout).Status(ctx)
	filePID, perr := pidfile.Running(f.pidPath)
	switch {
	case f.live != nil:
		f.pid = f.live.PID
	case perr == nil:
		f.pid = filePID
	}
	f.pidErr = perr
	if f.live != nil && perr != nil {
		f.pidErr = nil // the socket answered: that process is the running bal
	}
	return f
}

// notRunningReason is one line on why no bal answers.
func (f *found) notRunningReason() string {
	switch {
	case f.pidErr != nil:
		return f.pidErr.Error()
	case f.liveErr != nil:
		return f.liveErr.Error()
	}
	return pidfile.ErrNotRunning.Error()
}
