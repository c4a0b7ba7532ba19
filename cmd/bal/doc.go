// Command bal is an L4 (TCP) load balancer. This package is its command
// line (docs/commands.md): one file per command (cmd_start.go, cmd_stop.go,
// cmd_graceful.go, cmd_check.go, cmd_doctor.go, cmd_status.go), the
// dispatcher in main.go and the shared human/JSON output helpers in
// report.go.
//
// run(args, stdout, stderr) is the whole program minus os.Exit, so tests call
// it in-process; a command is a *command built by its constructor, which
// registers its own flags and returns the function that runs it.
package main
