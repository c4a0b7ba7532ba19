package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/pflag"
)

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

With a running bal, doctor reports what that instance sees (its config, its
health checks, its limits); without one it probes the backends itself, in
parallel with a short timeout.

Exit codes: 0 no critical finding; 1 a critical finding.`,
		flags: func(fs *pflag.FlagSet) {
			configFlag(fs, &o.config)
			o.out.register(fs, true)
		},
		run: func(e *env) int { return runDoctor(e, o) },
	}
}

// doctorCheck is one entry of checks[].
type doctorCheck struct {
	Name    string  `json:"name"`
	Level   string  `json:"level"`
	Summary string  `json:"summary"`
	Hint    *string `json:"hint"`
}

// doctorJSON is bal doctor's JSON document (docs/operations.md#bal-doctor).
type doctorJSON struct {
	Overall        string         `json:"overall"`
	Checks         []doctorCheck  `json:"checks"`
	ProtectionMode protectionJSON `json:"protection_mode"`
	Critical       int            `json:"critical"`
	Warnings       int            `json:"warnings"`
	Running        bool           `json:"running"`
	PID            *int           `json:"pid"`
	ConfigPath     string         `json:"config_path"`
}

func runDoctor(e *env, o *doctorOptions) int {
	res := doctor(context.Background(), o.config)
	switch {
	case o.out.json:
		if err := writeJSON(e.stdout, res); err != nil {
			fmt.Fprintf(e.stderr, "bal doctor: %v\n", err)
		}
	case o.out.brief:
		brief(e.stdout, res.Overall, doctorBrief(res))
	default:
		doctorReport(res, o.out.verbose).write(e.stdout)
	}
	if res.Overall == levelFailed {
		return exitFail
	}
	return exitOK
}

// doctorBrief is the one line of --brief, after the level.
func doctorBrief(res *doctorJSON) string {
	var bad []string
	for _, c := range res.Checks {
		if c.Level != checkOK {
			bad = append(bad, c.Name+": "+c.Summary)
		}
	}
	switch {
	case res.Critical > 0:
		return fmt.Sprintf("%d critical, %s: %s", res.Critical, plural(res.Warnings, "warning"), strings.Join(bad, "; "))
	case res.Warnings > 0:
		return fmt.Sprintf("%s: %s", plural(res.Warnings, "warning"), strings.Join(bad, "; "))
	}
	return fmt.Sprintf("%d checks passed", len(res.Checks))
}

// plural is "1 warning", "2 warnings".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// doctorReport is the human report: the counts, the findings (every check
// with its hint under --verbose), then the triplet or next.
func doctorReport(res *doctorJSON, verbose bool) *report {
	r := newReport("doctor")
	r.field("overall", res.Overall)
	r.field("critical", res.Critical)
	r.field("warnings", res.Warnings)
	pm := "off"
	if res.ProtectionMode.Enabled {
		pm = "on (" + reasonOr(res.ProtectionMode.Reason) + ")"
	}
	r.field("protection_mode", pm)
	var shown []doctorCheck
	for _, c := range res.Checks {
		if verbose || c.Level != checkOK {
			shown = append(shown, c)
		}
	}
	key := "findings"
	if verbose {
		key = "checks"
	}
	if len(shown) > 0 || verbose {
		r.field(key, len(shown))
		for _, c := range shown {
			r.item("[" + strings.ToUpper(c.Level) + "] " + c.Name + ": " + c.Summary)
			if verbose && c.Hint != nil {
				r.detail("hint", *c.Hint)
			}
		}
	}
	switch {
	case res.Critical > 0:
		do := "run 'bal doctor --verbose' and fix critical checks before 'bal status'"
		if verbose {
			do = "fix the critical checks listed above (see their hints), then run 'bal doctor' again"
		}
		r.problem(triplet{
			what: "runtime diagnostics found critical failures",
			why:  "daemon state, bind target, or backend connectivity is broken",
			do:   do,
		})
	case res.Warnings > 0:
		r.problem(triplet{
			what: "runtime diagnostics found warnings",
			why:  "partial connectivity or port ownership needs confirmation",
			do:   "run 'bal status' now, then inspect details with 'bal doctor --verbose'",
		})
	default:
		r.next("run 'bal status'")
	}
	return r
}
