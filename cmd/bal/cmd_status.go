package main

import "github.com/spf13/pflag"

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

func runStatus(e *env, _ *statusOptions) int {
	// Built by a later issue.
	return notAvailable(e, "status")
}
