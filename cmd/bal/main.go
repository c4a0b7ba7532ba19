package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/pflag"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
// Without it, the module version from the build info, else "dev".
var version string

// Exit codes shared by every command.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// env is what a command runs with.
type env struct {
	stdout, stderr io.Writer
}

// command is one bal subcommand. Its constructor (startCommand, ...) builds
// the options it needs, registers their flags in flags and closes over them
// in run.
type command struct {
	name    string
	summary string // one line for bal --help
	usage   string // the flags part of "Usage: bal NAME ..."
	help    string // what the command does, for bal NAME --help
	flags   func(fs *pflag.FlagSet)
	run     func(e *env) int
	// runArgs, instead of run, runs a command that takes positional words
	// (a subcommand, its operand): it gets them after the flags are parsed.
	runArgs func(e *env, args []string) int
}

// commands is the command table, in the order bal --help lists them.
func commands() []*command {
	return []*command{
		startCommand(),
		stopCommand(),
		gracefulCommand(),
		checkCommand(),
		doctorCommand(),
		statusCommand(),
		backendCommand(),
	}
}

func findCommand(name string) *command {
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	return nil
}

// run is bal without os.Exit: it parses args, runs one command and returns
// the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	for i, a := range args {
		switch {
		case a == "--help" || a == "-h":
			fmt.Fprint(stdout, globalHelp())
			return exitOK
		case a == "--version" || a == "-V":
			fmt.Fprintln(stdout, versionLine())
			return exitOK
		case a == "help":
			return helpCommand(e, args[i+1:])
		case strings.HasPrefix(a, "-") && a != "-":
			return usageError(e, "bal", fmt.Sprintf("unknown flag %q", a), "bal --help")
		default:
			c := findCommand(a)
			if c == nil {
				return usageError(e, "bal", fmt.Sprintf("unknown command %q", a), "bal --help")
			}
			return runCommand(e, c, args[i+1:])
		}
	}
	return usageError(e, "bal", "missing command", "bal --help")
}

// runCommand parses a command's flags (GNU style, before or after
// positional words) and runs it. Only a command with runArgs takes
// positional words.
func runCommand(e *env, c *command, args []string) int {
	fs := pflag.NewFlagSet("bal "+c.name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	c.flags(fs)
	help := fs.BoolP("help", "h", false, "show this help")
	hint := "bal " + c.name + " --help"
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(e.stdout, commandHelp(c, fs))
			return exitOK
		}
		return usageError(e, "bal "+c.name, err.Error(), hint)
	}
	if *help {
		fmt.Fprint(e.stdout, commandHelp(c, fs))
		return exitOK
	}
	if c.runArgs != nil {
		return c.runArgs(e, fs.Args())
	}
	if fs.NArg() > 0 {
		return usageError(e, "bal "+c.name, fmt.Sprintf("unexpected argument %q", fs.Arg(0)), hint)
	}
	return c.run(e)
}

// helpCommand is "bal help [COMMAND]".
func helpCommand(e *env, args []string) int {
	switch len(args) {
	case 0:
		fmt.Fprint(e.stdout, globalHelp())
		return exitOK
	case 1:
		c := findCommand(args[0])
		if c == nil {
			return usageError(e, "bal help", fmt.Sprintf("unknown command %q", args[0]), "bal --help")
		}
		return runCommand(e, c, []string{"--help"})
	default:
		return usageError(e, "bal help", fmt.Sprintf("unexpected argument %q", args[1]), "bal --help")
	}
}

// usageError prints the one-line hint (docs/commands.md#usage) and returns exit code 2.
func usageError(e *env, who, msg, hint string) int {
	fmt.Fprintf(e.stderr, "%s: %s (see '%s')\n", who, oneLine(msg), hint)
	return exitUsage
}

func globalHelp() string {
	var b strings.Builder
	b.WriteString("bal - an L4 (TCP) load balancer\n\n")
	b.WriteString("Usage: bal [--version] [--help] COMMAND [FLAGS]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-9s %s\n", c.name, c.summary)
	}
	b.WriteString(`
Recommended flow: bal check -> bal doctor -> bal status.
Run 'bal COMMAND --help' (or 'bal help COMMAND') for a command's flags.

Without -c, every command reads $BAL_HOME/config.yaml, then
/etc/bal/config.yaml. BAL_HOME (default ~/.bal) holds config.yaml, bal.pid,
bal.sock, bal.log and state.json.

Flags:
  -h, --help      show this help
  -V, --version   print the version
`)
	return b.String()
}

func commandHelp(c *command, fs *pflag.FlagSet) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: bal %s", c.name)
	if c.usage != "" {
		b.WriteString(" " + c.usage)
	}
	b.WriteString("\n\n")
	b.WriteString(strings.TrimSpace(c.help))
	b.WriteString("\n\nFlags:\n")
	b.WriteString(flagUsages(fs))
	return b.String()
}

// flagUsages lists a command's flags, one a line, aligned:
// "  -c, --config FILE   config FILE (default: ...)". (pflag's own listing
// marks every boolean flag "[=true|false]".)
func flagUsages(fs *pflag.FlagSet) string {
	type row struct{ left, usage string }
	var rows []row
	width := 0
	fs.VisitAll(func(f *pflag.Flag) {
		name, usage := pflag.UnquoteUsage(f)
		left := "      --" + f.Name
		if f.Shorthand != "" {
			left = "  -" + f.Shorthand + ", --" + f.Name
		}
		if name != "" {
			left += " " + name
		}
		width = max(width, len(left))
		rows = append(rows, row{left, usage})
	})
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%-*s   %s\n", width, r.left, r.usage)
	}
	return b.String()
}

// versionLine is "bal <version> (<go version>, <os>/<arch>)".
func versionLine() string {
	return fmt.Sprintf("bal %s (%s, %s/%s)", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// configFlag registers -c/--config, shared by start, check, doctor and status.
func configFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVarP(p, "config", "c", "", "read `FILE` (default: $BAL_HOME/config.yaml, then /etc/bal/config.yaml)")
}

// outputOptions are the output flags of check, doctor and status. --json
// wins over --brief, which wins over --verbose (as in the original).
type outputOptions struct {
	brief, json, verbose bool
}

func (o *outputOptions) register(fs *pflag.FlagSet, withBrief bool) {
	if withBrief {
		fs.BoolVar(&o.brief, "brief", false, "print one line: OK, WARN or FAILED and a summary")
	}
	fs.BoolVar(&o.json, "json", false, "print exactly one JSON document on stdout, also on failure")
	fs.BoolVar(&o.verbose, "verbose", false, "add details to the human report")
}
