package main

import "github.com/spf13/pflag"

func gracefulCommand() *command {
	return &command{
		name:    "graceful",
		summary: "reload the running instance's config file and report the result",
		help: `
Ask the bal of $BAL_HOME to reload the file it was started with, and print
the result: what changed, or why the file was rejected (the old config then
keeps serving). Existing connections are never cut by a reload.

Exit codes: 0 reloaded; 1 rejected (with the reason) or not running.`,
		flags: func(*pflag.FlagSet) {},
		run:   runGraceful,
	}
}

func runGraceful(e *env) int {
	// The control socket comes with a later issue.
	return notAvailable(e, "graceful")
}
