package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bal-lb/bal/engine/adminstate"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/control"
	"github.com/bal-lb/bal/engine/pool"
	"github.com/spf13/pflag"
)

// backendTimeout bounds bal backend's wait for the running instance.
const backendTimeout = 10 * time.Second

// backendOptions are the flags of bal backend.
type backendOptions struct {
	json       bool
	service    string
	route      string
	closeAfter string // parsed by runBackend, so that a bad value is a usage error with its own message
}

func backendCommand() *command {
	o := &backendOptions{}
	return &command{
		name:    "backend",
		summary: "list backends, or take one out (drain, maint) and back (ready) at runtime",
		usage:   "list [--json] | drain|maint|ready BACKEND [--service NAME] [--route NAME] [--close-after DURATION]",
		help: `
Operate the backends of the running bal without editing the config
(docs/operations.md, "Take a backend out for a deploy"):

  bal backend list            every backend of every pool: admin state, health, open connections
  bal backend drain BACKEND   no new connections; open ones continue
  bal backend maint BACKEND   like drain, and its health checks pause
  bal backend ready BACKEND   back into rotation

BACKEND is host:port as configured ("10.0.0.1:8080", "[::1]:8080" or
"::1:8080", "app.internal:8080"). A state applies to every pool that holds
the backend, in every service, unless --service or --route narrows it
(--route default is a service's default pool). With --close-after, the
connections still open that long after the state is applied are reset.
States are kept in $BAL_HOME/state.json: they survive reloads (while the
backend stays configured) and restarts. Prints one line per pool:
"service/pool address: old -> new".

Exit codes: 0 applied (or listed); 1 unknown backend, service or route, or
bal not running; 2 usage (an unknown subcommand, a missing BACKEND, a
--close-after that does not parse).`,
		flags: func(fs *pflag.FlagSet) {
			fs.BoolVar(&o.json, "json", false, "list: print exactly one JSON document (GET /backends), also on failure")
			fs.StringVar(&o.service, "service", "", "only the pools of service `NAME`")
			fs.StringVar(&o.route, "route", "", "only the pool of route `NAME` (\"default\": the default pool)")
			fs.StringVar(&o.closeAfter, "close-after", "", "drain, maint: reset the connections still open `DURATION` after the state is applied (Go syntax: 30s, 5m)")
		},
		runArgs: func(e *env, args []string) int { return runBackend(e, o, args) },
	}
}

func runBackend(e *env, o *backendOptions, args []string) int {
	usage := func(msg string) int { return usageError(e, "bal backend", msg, "bal backend --help") }
	if len(args) == 0 {
		return usage("missing subcommand: list, drain, maint or ready")
	}
	sub, rest := args[0], args[1:]
	if sub == "list" {
		switch {
		case len(rest) > 0:
			return usage(fmt.Sprintf("unexpected argument %q", rest[0]))
		case o.closeAfter != "":
			return usage("--close-after applies to drain and maint")
		}
		return backendList(e, o)
	}
	state, err := pool.ParseAdminState(sub)
	if err != nil {
		return usage(fmt.Sprintf("unknown subcommand %q: use list, drain, maint or ready", sub))
	}
	switch {
	case o.json:
		return usage("--json applies to list")
	case len(rest) == 0:
		return usage("missing BACKEND (host:port as configured)")
	case len(rest) > 1:
		return usage(fmt.Sprintf("unexpected argument %q", rest[1]))
	}
	backend := rest[0]
	if _, err := adminstate.ParseBackend(backend); err != nil {
		return usage(err.Error())
	}
	req := control.StateRequest{Backend: backend, Service: o.service, Route: o.route, State: state.String()}
	if o.closeAfter != "" {
		d, err := time.ParseDuration(o.closeAfter)
		switch {
		case err != nil:
			return usage(fmt.Sprintf("--close-after %q is not a duration (Go syntax: 30s, 5m)", o.closeAfter))
		case d <= 0:
			return usage(fmt.Sprintf("--close-after %s must be positive (leave it out to keep open connections)", o.closeAfter))
		case state == pool.Ready:
			return usage("--close-after applies to drain and maint")
		case d < time.Millisecond:
			return usage(fmt.Sprintf("--close-after %s is below a millisecond", o.closeAfter))
		}
		req.CloseAfterMS = d.Milliseconds()
	}
	client, err := backendClient()
	if err != nil {
		fmt.Fprintf(e.stderr, "bal backend: %v\n", err)
		return exitFail
	}
	ctx, cancel := context.WithTimeout(context.Background(), backendTimeout)
	defer cancel()
	ans, err := client.SetBackendState(ctx, req)
	if err != nil {
		fmt.Fprintf(e.stderr, "bal backend %s: %s\n", sub, oneLine(backendError(err)))
		return exitFail
	}
	for _, c := range ans.Changed {
		fmt.Fprintf(e.stdout, "%s/%s %s: %s -> %s\n", c.Service, c.Pool, c.Address, c.Previous, c.State)
	}
	if req.CloseAfterMS > 0 {
		fmt.Fprintf(e.stdout, "connections still open in %s will be reset\n", o.closeAfter)
	}
	if ans.Warning != "" {
		fmt.Fprintf(e.stderr, "bal backend %s: warning: %s\n", sub, oneLine(ans.Warning))
	}
	return exitOK
}

// backendList is bal backend list.
func backendList(e *env, o *backendOptions) int {
	type listJSON struct {
		Backends []control.BackendEntry `json:"backends"`
		Error    *string                `json:"error,omitempty"`
	}
	fail := func(err error) int {
		msg := backendError(err)
		if o.json {
			_ = writeJSON(e.stdout, listJSON{Backends: []control.BackendEntry{}, Error: &msg})
		} else {
			fmt.Fprintf(e.stderr, "bal backend list: %s\n", oneLine(msg))
		}
		return exitFail
	}
	client, err := backendClient()
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), backendTimeout)
	defer cancel()
	l, err := client.Backends(ctx)
	if err != nil {
		return fail(err)
	}
	var shown []control.BackendEntry
	for _, b := range l.Backends {
		if (o.service == "" || b.Service == o.service) && (o.route == "" || b.Pool == o.route) {
			shown = append(shown, b)
		}
	}
	if shown == nil {
		shown = []control.BackendEntry{}
	}
	if o.json {
		if err := writeJSON(e.stdout, listJSON{Backends: shown}); err != nil {
			fmt.Fprintf(e.stderr, "bal backend list: %v\n", err)
			return exitFail
		}
		return exitOK
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tPOOL\tBACKEND\tSTATE\tHEALTH\tACTIVE")
	for _, b := range shown {
		health := "down"
		if b.Reachable {
			health = "up"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", b.Service, b.Pool, b.Address, b.AdminState, health, b.ActiveConnections)
	}
	_ = tw.Flush()
	return exitOK
}

// backendClient is a control client of the bal of $BAL_HOME.
func backendClient() (*control.Client, error) {
	home, err := config.Home()
	if err != nil {
		return nil, err
	}
	return control.NewClient(filepath.Join(home, sockName), backendTimeout), nil
}

// backendError words a failed request for the operator.
func backendError(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, control.ErrNotRunning):
		return msg + "; start it with 'bal start -d'"
	case errors.Is(err, control.ErrUnknownBackend):
		return strings.TrimPrefix(msg, control.ErrUnknownBackend.Error()+": ") + " (see 'bal backend list')"
	case errors.Is(err, control.ErrBadRequest):
		return strings.TrimPrefix(msg, control.ErrBadRequest.Error()+": ")
	}
	return msg
}
