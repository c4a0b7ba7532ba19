package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzCLI runs bal's argument handling in-process on arbitrary argument
// lists (NUL-separated in the input): every command's flag parsing, help,
// usage errors, and check/status/stop/graceful against an empty BAL_HOME.
// No panic; exit codes only 0, 1, 2 or 3; a usage error is one line on
// stderr; --json prints exactly one JSON document. Inputs that would start
// a server (start) or probe the network (doctor), or name an absolute path
// (a device could block a read), are skipped.
func FuzzCLI(f *testing.F) {
	for _, s := range []string{
		"check\x00-c\x00testdata/configs/valid.yaml",
		"check\x00--json\x00--config=testdata/configs/invalid.yaml",
		"check\x00--strict\x00--verbose\x00-c\x00testdata/configs/warnings.yaml",
		"status\x00--json",
		"status\x00--brief\x00-c",
		"stop\x00--timeout\x00-5s",
		"stop\x00--timeout=1h1m1s1ms",
		"graceful\x00extra",
		"help\x00check",
		"--version",
		"-x",
		"",
		"check\x00--json\x00--json\x00-c=",
		"status\x00-h",
		"backend\x00list\x00--json",
		"backend\x00drain\x00[::1]:80\x00--close-after\x00-1s",
		"backend\x00maint\x00::1:80\x00--service\x00web\x00--route",
	} {
		f.Add(s)
	}
	f.Setenv("BAL_HOME", f.TempDir())
	f.Fuzz(func(t *testing.T, in string) {
		args := strings.Split(in, "\x00")
		if in == "" {
			args = nil
		}
		for _, a := range args {
			if a == "start" || a == "doctor" || strings.Contains(a, "/") && !strings.Contains(a, "testdata/") {
				t.Skip("starts a server, probes the network or names a path outside testdata")
			}
		}
		var out, errb bytes.Buffer
		code := run(args, &out, &errb)
		switch code {
		case exitOK, exitFail, exitUsage, exitNotRunning:
		default:
			t.Fatalf("bal %q: exit %d", args, code)
		}
		if code == exitUsage && strings.Count(strings.TrimSuffix(errb.String(), "\n"), "\n") != 0 {
			t.Fatalf("bal %q: usage error on more than one line: %q", args, errb.String())
		}
		if code != exitUsage && hasFlag(args, "--json") && !hasFlag(args, "--help", "-h") && (len(args) == 0 || args[0] != "help") {
			dec := json.NewDecoder(&out)
			var v any
			if err := dec.Decode(&v); err != nil || dec.More() {
				t.Fatalf("bal %q --json: not exactly one JSON document (%v): %q", args, err, out.String())
			}
		}
	})
}

// hasFlag reports whether one of names is given as a flag, reading args as
// pflag does: "--" ends the flags, and a flag that takes a value (-c,
// --config, --timeout) consumes the next word even when it starts with "-"
// ("-c --json" names a config file called --json).
func hasFlag(args []string, names ...string) bool {
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "--":
			return false
		case "-c", "--config", "--timeout":
			i++
		default:
			for _, n := range names {
				if a == n {
					return true
				}
			}
		}
	}
	return false
}
