package main

import (
	"os"

	"github.com/spf13/pflag"
)

// startOptions are the flags of bal start.
type startOptions struct {
	config string
	daemon bool
}

func startCommand() *command {
	o := &startOptions{}
	return &command{
		name:    "start",
		summary: "run the balancer (in the foreground, or detached with -d)",
		usage:   "[-c FILE] [-d]",
		help: `
Run the balancer. Without -c and with no config file found, the commented
default is written to $BAL_HOME/config.yaml (mode 0600) and used.
With -d, bal detaches and returns once the daemon listens (exit 0) or has
failed (exit 1, with its error); the daemon logs to $BAL_HOME/bal.log
(reopened on SIGUSR1). Without -d it runs in the foreground (as under
systemd or launchd), logs to stderr, and drains on SIGTERM/SIGINT like the
daemon. Both write $BAL_HOME/bal.pid and answer on $BAL_HOME/bal.sock.

Exit codes: 0 after a clean shutdown; 1 when it cannot start (bad config,
port in use, already running).`,
		flags: func(fs *pflag.FlagSet) {
			configFlag(fs, &o.config)
			fs.BoolVarP(&o.daemon, "daemon", "d", false, "run detached; return once the daemon is listening or has failed")
		},
		run: func(e *env) int { return runStart(e, o) },
	}
}

func runStart(e *env, o *startOptions) int {
	switch {
	case os.Getenv(envReadyFD) != "":
		return runDaemonChild(e, o.config)
	case o.daemon:
		return startDaemon(e, o.config)
	}
	return serveForeground(e, o.config)
}
