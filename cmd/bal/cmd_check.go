package main

import (
	"errors"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/control"
)

// checkOptions are the flags of bal check.
type checkOptions struct {
	config string
	strict bool
	out    outputOptions
}

func checkCommand() *command {
	o := &checkOptions{}
	return &command{
		name:    "check",
		summary: "validate the config file (static: no network)",
		usage:   "[-c FILE] [--strict] [--json] [--verbose]",
		help: `
Validate the config file without touching the network: every error is
listed with its line (unknown keys, wrong types, values out of range,
duplicate backends, overlapping services, bad routes and health checks),
and warnings point at settings that are valid but probably unintended
(listening on all interfaces, a runtime: block that simple mode ignores,
...). A file with services or routes gets one line per service and route.

Exit codes: 0 valid; 1 invalid or missing, or warnings under --strict.`,
		flags: func(fs *pflag.FlagSet) {
			configFlag(fs, &o.config)
			fs.BoolVar(&o.strict, "strict", false, "fail (exit 1) on warnings too")
			o.out.register(fs, false)
		},
		run: func(e *env) int { return runCheck(e, o) },
	}
}

// checkResult is bal check's JSON document (docs/configuration.md#check-output). errors, warnings and
// warning_details are always arrays, mode is null when it is not known.
type checkResult struct {
	ConfigPath     string         `json:"config_path"`
	Mode           *string        `json:"mode"`
	Valid          bool           `json:"valid"`
	Result         string         `json:"result"` // OK, or FAILED (invalid, or warnings under --strict)
	Strict         bool           `json:"strict"`
	BackendCount   int            `json:"backend_count"`
	Errors         []config.Issue `json:"errors"`
	Warnings       []string       `json:"warnings"`
	WarningDetails []config.Issue `json:"warning_details"`
	// Services of a valid file, in file order (a single-service file has
	// one, named default); empty when the file is not valid.
	Services []checkService `json:"services"`

	single bool    // the file is in the single-service form
	fault  triplet // why it failed to load, when it did not
}

// checkService is one service in bal check --json.
type checkService struct {
	Name         string       `json:"name"`
	Protocol     string       `json:"protocol"`
	Listen       string       `json:"listen"`        // bind_address:port
	BackendCount int          `json:"backend_count"` // over all its pools
	Routes       []checkRoute `json:"routes"`
	Inspects     bool         `json:"inspects"` // reads the TLS ClientHello (a route uses sni or alpn)
}

// checkRoute is one route of a service in bal check --json.
type checkRoute struct {
	Name         string        `json:"name"`
	Match        control.Match `json:"match"`
	BackendCount int           `json:"backend_count"`
}

func newCheckService(v *config.Service) checkService {
	cs := checkService{
		Name:         v.Name,
		Protocol:     string(v.Protocol),
		Listen:       v.ListenAddress(),
		BackendCount: v.BackendCount(),
		Routes:       make([]checkRoute, 0, len(v.Routes)),
		Inspects:     v.Inspects(),
	}
	for _, r := range v.Routes {
		cs.Routes = append(cs.Routes, checkRoute{Name: r.Name, Match: control.MatchFrom(r.Match), BackendCount: len(r.Backends)})
	}
	return cs
}

func runCheck(e *env, o *checkOptions) int {
	res := check(o.config, o.strict)
	switch {
	case o.out.json:
		if err := writeJSON(e.stdout, res); err != nil {
			fmt.Fprintf(e.stderr, "bal check: %v\n", err)
			return exitFail
		}
	default:
		checkReport(res, o).write(e.stdout)
	}
	if res.Result != levelOK {
		return exitFail
	}
	return exitOK
}

// check resolves, loads and judges the config file. It never touches the
// network.
func check(flagPath string, strict bool) *checkResult {
	res := &checkResult{
		Strict:         strict,
		Result:         levelFailed,
		Errors:         []config.Issue{},
		Warnings:       []string{},
		WarningDetails: []config.Issue{},
		Services:       []checkService{},
	}
	path, err := config.Resolve(flagPath)
	if err != nil {
		res.Errors = append(res.Errors, config.Issue{Message: err.Error()})
		res.fault = triplet{
			what: "configuration file cannot be located",
			why:  err.Error(),
			do:   "set BAL_HOME or pass '-c FILE'",
		}
		return res
	}
	res.ConfigPath = path
	snap, err := config.Load(path)
	var ce *config.Error
	switch {
	case err == nil:
		mode := string(snap.Mode)
		res.Mode = &mode
		res.Valid = true
		res.single = snap.Single
		for i := range snap.Services {
			v := &snap.Services[i]
			res.BackendCount += v.BackendCount()
			res.Services = append(res.Services, newCheckService(v))
		}
		res.addWarnings(snap.Warnings)
		if len(snap.Warnings) == 0 || !strict {
			res.Result = levelOK
		}
	case errors.As(err, &ce):
		if ce.Mode != "" {
			mode := string(ce.Mode)
			res.Mode = &mode
		}
		res.BackendCount = ce.BackendCount
		res.Errors = append(res.Errors, ce.Issues...)
		res.addWarnings(ce.Warnings)
	case errors.Is(err, config.ErrNotFound):
		res.Errors = append(res.Errors, config.Issue{Message: "config file not found: " + path})
		why := "no file at " + path + " and none at /etc/bal/config.yaml"
		if flagPath != "" {
			why = "the file given with -c does not exist: " + path
		}
		res.fault = triplet{
			what: "configuration file not found",
			why:  why,
			do:   "create it ('bal start' writes a commented default to $BAL_HOME/config.yaml) or pass '-c FILE'",
		}
	default:
		res.Errors = append(res.Errors, config.Issue{Message: err.Error()})
		res.fault = triplet{
			what: "configuration file cannot be read",
			why:  err.Error(),
			do:   "check that the path is a readable file, or pass another one with '-c FILE'",
		}
	}
	return res
}

func (r *checkResult) addWarnings(ws []config.Issue) {
	for _, w := range ws {
		r.Warnings = append(r.Warnings, w.Message)
		r.WarningDetails = append(r.WarningDetails, w)
	}
}

// checkReport builds the human report: concise by default, with the config
// path, every error and every warning under --verbose.
func checkReport(res *checkResult, o *checkOptions) *report {
	r := newReport("check")
	r.field("result", res.Result)
	mode := "-"
	if res.Mode != nil {
		mode = *res.Mode
	}
	r.field("mode", mode)
	r.field("backends", res.BackendCount)
	if showServices(res) {
		r.field("services", len(res.Services))
		for _, v := range res.Services {
			r.item(serviceLine(v))
			for _, rt := range v.Routes {
				r.detail("route "+rt.Name, fmt.Sprintf("%s -> %s", rt.Match.String(), plural(rt.BackendCount, "backend")))
			}
		}
	}
	r.field("warnings", len(res.Warnings))
	verbose := o.out.verbose
	if verbose {
		r.field("config", orDash(res.ConfigPath))
		r.list("errors", issueLines(res.Errors))
		r.list("warning_details", issueLines(res.WarningDetails))
	} else if len(res.Errors) > 0 {
		r.field("errors", len(res.Errors))
		r.field("first_error", res.Errors[0].String())
	}

	switch {
	case res.fault.what != "":
		r.problem(res.fault)
	case !res.Valid:
		do := "run 'bal check --verbose' and fix listed errors"
		if verbose {
			do = "fix the errors listed above, then run 'bal check' again"
		}
		r.problem(triplet{
			what: "configuration validation failed",
			why:  "required fields are missing or invalid values were provided",
			do:   do,
		})
	case len(res.Warnings) > 0 && res.Strict:
		do := "fix the warnings listed by 'bal check --strict --verbose'"
		if verbose {
			do = "fix the warnings listed above, then run 'bal check --strict' again"
		}
		r.problem(triplet{
			what: "configuration is valid but --strict fails on its warnings",
			why:  "safe defaults or network-exposure settings may need review",
			do:   do,
		})
	case len(res.Warnings) > 0:
		do := "run 'bal doctor' now, then inspect warnings with 'bal check --verbose'"
		if verbose {
			do = "review the warnings listed above, then run 'bal doctor'"
		}
		r.problem(triplet{
			what: "configuration is usable but has warnings",
			why:  "safe defaults or network-exposure settings may need review",
			do:   do,
		})
	default:
		r.next("run 'bal doctor'")
	}
	return r
}

// showServices: the human report lists services unless the file is the
// plain single-service form (one service, no routes), whose report stays
// as it was.
func showServices(res *checkResult) bool {
	if !res.Valid {
		return false
	}
	return !res.single || len(res.Services) != 1 || len(res.Services[0].Routes) > 0
}

// serviceLine is "web: tcp 127.0.0.1:443, 5 backends, 2 routes, inspects TLS".
func serviceLine(v checkService) string {
	s := fmt.Sprintf("%s: %s %s, %s", v.Name, v.Protocol, v.Listen, plural(v.BackendCount, "backend"))
	if len(v.Routes) > 0 {
		s += ", " + plural(len(v.Routes), "route")
	}
	if v.Inspects {
		s += ", inspects TLS"
	}
	return s
}

func issueLines(is []config.Issue) []string {
	out := make([]string, len(is))
	for i, x := range is {
		out[i] = x.String()
	}
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
