package main

import (
	"time"

	"github.com/spf13/pflag"
)

// stopOptions are the flags of bal stop.
type stopOptions struct {
	timeout time.Duration // 0: the running drain timeout + 5 s
}

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
says so.

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
	// Process control comes with a later issue.
	return notAvailable(e, "stop")
}
