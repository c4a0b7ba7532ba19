package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/control"
	"github.com/spf13/pflag"
)

// reloadTimeout bounds bal graceful's wait for the reload's outcome.
const reloadTimeout = 90 * time.Second

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
	home, err := config.Home()
	if err != nil {
		fmt.Fprintf(e.stderr, "bal graceful: %v\n", err)
		return exitFail
	}
	ctx, cancel := context.WithTimeout(context.Background(), reloadTimeout)
	defer cancel()
	r, err := control.NewClient(filepath.Join(home, sockName), reloadTimeout).Reload(ctx)
	switch {
	case errors.Is(err, control.ErrNotRunning):
		fmt.Fprintf(e.stderr, "bal graceful: %v; start it with 'bal start -d'\n", err)
		return exitFail
	case err != nil:
		fmt.Fprintf(e.stderr, "bal graceful: %v\n", err)
		return exitFail
	case !r.OK:
		why := "no reason given"
		if r.Error != nil {
			why = *r.Error
		}
		fmt.Fprintf(e.stderr, "bal graceful: %s; the previous configuration keeps serving\n", oneLine(why))
		return exitFail
	}
	fmt.Fprintln(e.stdout, reloadSummary(r))
	return exitOK
}

// reloadSummary is the one line of a successful reload.
func reloadSummary(r *control.Reload) string {
	if len(r.Changes) == 0 {
		return "reloaded: no changes"
	}
	return "reloaded: " + oneLine(strings.Join(r.Changes, "; "))
}
