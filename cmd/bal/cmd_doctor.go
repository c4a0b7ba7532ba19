package main

import "github.com/spf13/pflag"

// doctorOptions are the flags of bal doctor.
type doctorOptions struct {
	config string
	out    outputOptions
}

func doctorCommand() *command {
	o := &doctorOptions{}
	return &command{
		name:    "doctor",
		summary: "diagnose the runtime environment (pid, config, bind, backends, limits, control)",
		usage:   "[-c FILE] [--brief] [--json] [--verbose]",
		help: `
Diagnose what bal needs at run time: the PID file, the config, whether the
listen address can be bound (a port held by the running bal itself is fine),
whether the backends answer, the file descriptor and backlog limits, and the
control socket. Unlike bal check, doctor uses the network.

Exit codes: 0 no critical finding; 1 a critical finding.`,
		flags: func(fs *pflag.FlagSet) {
			configFlag(fs, &o.config)
			o.out.register(fs, true)
		},
		run: func(e *env) int { return runDoctor(e, o) },
	}
}

func runDoctor(e *env, _ *doctorOptions) int {
	// Built by a later issue.
	return notAvailable(e, "doctor")
}
