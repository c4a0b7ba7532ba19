package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
)

// TestRunUsage pins flag parsing and exit codes for every command.
func TestRunUsage(t *testing.T) {
	const valid = "testdata/configs/valid.yaml"
	tests := []struct {
		args   []string
		code   int
		stdout string // substring ("" = must be empty)
		stderr string // substring ("" = must be empty)
	}{
		// Global.
		{nil, 2, "", "bal: missing command (see 'bal --help')"},
		{[]string{"--help"}, 0, "Usage: bal [--version] [--help] COMMAND [FLAGS]", ""},
		{[]string{"-h"}, 0, "Commands:\n  start ", ""},
		{[]string{"help"}, 0, "Recommended flow: bal check -> bal doctor -> bal status", ""},
		{[]string{"help", "check"}, 0, "Usage: bal check [-c FILE] [--strict] [--json] [--verbose]", ""},
		{[]string{"help", "nope"}, 2, "", `bal help: unknown command "nope"`},
		{[]string{"help", "check", "x"}, 2, "", `bal help: unexpected argument "x"`},
		{[]string{"--version"}, 0, fmt.Sprintf("bal dev (%s, %s/%s)\n", runtime.Version(), runtime.GOOS, runtime.GOARCH), ""},
		{[]string{"-V"}, 0, "bal dev (", ""},
		{[]string{"nope"}, 2, "", `bal: unknown command "nope" (see 'bal --help')`},
		{[]string{"--nope"}, 2, "", `bal: unknown flag "--nope" (see 'bal --help')`},
		{[]string{"-c", valid, "check"}, 2, "", `bal: unknown flag "-c"`},

		// Every command has --help and -h, on stdout with exit 0.
		{[]string{"start", "--help"}, 0, "Usage: bal start [-c FILE] [-d]", ""},
		{[]string{"stop", "-h"}, 0, "Usage: bal stop [--timeout DURATION]", ""},
		{[]string{"graceful", "--help"}, 0, "Usage: bal graceful\n", ""},
		{[]string{"check", "-h"}, 0, "  -c, --config FILE ", ""},
		{[]string{"doctor", "--help"}, 0, "      --brief ", ""},
		{[]string{"status", "--help"}, 0, "Exit codes: 0 running; 3 not running.", ""},
		{[]string{"check", "--strict", "--help"}, 0, "Usage: bal check", ""},

		// Usage errors: exit 2 and a one-line hint.
		{[]string{"check", "--nope"}, 2, "", "bal check: unknown flag: --nope (see 'bal check --help')\n"},
		{[]string{"check", "-c"}, 2, "", "bal check: flag needs an argument: 'c' in -c (see 'bal check --help')\n"},
		{[]string{"check", "--config"}, 2, "", "bal check: flag needs an argument: --config"},
		{[]string{"check", "-c", valid, "extra"}, 2, "", `bal check: unexpected argument "extra"`},
		{[]string{"check", "--brief"}, 2, "", "unknown flag: --brief"},
		{[]string{"start", "--strict"}, 2, "", "bal start: unknown flag: --strict"},
		{[]string{"start", "now"}, 2, "", `bal start: unexpected argument "now"`},
		{[]string{"stop", "-c", valid}, 2, "", "bal stop: unknown shorthand flag: 'c' in -c"},
		{[]string{"stop", "--timeout"}, 2, "", "flag needs an argument: --timeout"},
		{[]string{"stop", "--timeout", "10"}, 2, "", `invalid argument "10" for "--timeout" flag`},
		{[]string{"stop", "--timeout", "-1s"}, 2, "", "bal stop: --timeout must not be negative"},
		{[]string{"graceful", "-c", valid}, 2, "", "bal graceful: unknown shorthand flag: 'c' in -c"},
		{[]string{"doctor", "--strict"}, 2, "", "bal doctor: unknown flag: --strict"},
		{[]string{"status", "-d"}, 2, "", "bal status: unknown shorthand flag: 'd' in -d"},

		// check: flags before or after, GNU forms, exit codes.
		{[]string{"check", "-c", valid}, 0, "  result: OK\n", ""},
		{[]string{"check", "--config=" + valid}, 0, "  result: OK\n", ""},
		{[]string{"check", "-c" + valid}, 0, "  result: OK\n", ""},
		{[]string{"check", "--strict", "-c", valid, "--verbose"}, 0, "  errors: none\n", ""},
		{[]string{"check", "--", "-c"}, 2, "", `unexpected argument "-c"`},
		{[]string{"check", "-c", "testdata/configs/invalid.yaml"}, 1, "  result: FAILED\n", ""},
		{[]string{"check", "-c", "testdata/configs/warnings.yaml"}, 0, "  warnings: 2\n", ""},
		{[]string{"check", "-c", "testdata/configs/warnings.yaml", "--strict"}, 1, "  result: FAILED\n", ""},
		{[]string{"check", "-c", "testdata/configs/nope.yaml"}, 1, "configuration file not found", ""},
		{[]string{"check"}, 1, "no file at ", ""}, // empty BAL_HOME

		// The service commands with nothing running (an empty BAL_HOME);
		// start fails before it binds anything.
		{[]string{"start", "-c", "testdata/configs/nope.yaml"}, 1, "", "bal start: config file not found: "},
		{[]string{"start", "-d", "-c", "testdata/configs/invalid.yaml"}, 1, "", "bal start: invalid config "},
		{[]string{"stop", "--timeout", "10s"}, 1, "", "bal stop: bal is not running (no pid file "},
		{[]string{"stop"}, 1, "", "bal stop: bal is not running"},
		{[]string{"graceful"}, 1, "", "bal graceful: bal is not running (nothing answers on "},
		{[]string{"doctor", "--brief", "--json", "--verbose", "-c", "testdata/configs/invalid.yaml"}, 1, `"overall": "FAILED"`, ""},
		{[]string{"doctor", "--brief", "-c", "testdata/configs/invalid.yaml"}, 1, "FAILED 1 critical, 4 warnings: config: failed to load config: ", ""},
		{[]string{"status", "--json"}, 3, `"running": false`, ""},
		{[]string{"status", "--brief"}, 3, "FAILED not running: bal is not running (no pid file ", ""},
		{[]string{"status"}, 3, "  daemon: stopped\n  what_happened: daemon is not running\n", ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runInProcess(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, stdout, stderr)
			}
			check := func(name, got, want string) {
				if want == "" && got != "" {
					t.Errorf("%s should be empty, got %q", name, got)
				}
				if !strings.Contains(got, want) {
					t.Errorf("%s = %q, want it to contain %q", name, got, want)
				}
			}
			check("stdout", stdout, tt.stdout)
			check("stderr", stderr, tt.stderr)
			if tt.code == exitUsage && strings.Count(stderr, "\n") != 1 {
				t.Errorf("a usage error is one line on stderr, got %q", stderr)
			}
		})
	}
}

func TestVersionFromLdflags(t *testing.T) {
	defer func(v string) { version = v }(version)
	version = "v1.2.3"
	if got, want := versionLine(), fmt.Sprintf("bal v1.2.3 (%s, %s/%s)", runtime.Version(), runtime.GOOS, runtime.GOARCH); got != want {
		t.Errorf("versionLine() = %q, want %q", got, want)
	}
}

func TestReportHelpers(t *testing.T) {
	var b strings.Builder
	r := newReport("demo")
	r.field("result", levelOK)
	r.field("note", "two\nlines")
	r.list("items", []string{"a", "b"})
	r.list("empty", nil)
	r.problem(triplet{"w", "y", "d"})
	r.write(&b)
	want := "bal demo\n  result: OK\n  note: two\\nlines\n  items: 2\n    - a\n    - b\n  empty: none\n  what_happened: w\n  why_likely: y\n  do_this_now: d\n"
	if b.String() != want {
		t.Errorf("report =\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	brief(&b, levelWarn, "1 of 2 backends\nreachable")
	if b.String() != "WARN 1 of 2 backends\\nreachable\n" {
		t.Errorf("brief = %q", b.String())
	}
	b.Reset()
	if err := writeJSON(&b, map[string]any{"a": "<x>", "b": []int{}}); err != nil || b.String() != "{\n  \"a\": \"<x>\",\n  \"b\": []\n}\n" {
		t.Errorf("writeJSON = %q, %v", b.String(), err)
	}
}

// TestCheckCannotRead: a path that is not a readable file, or no home to
// look in, still gives the report shape and one JSON document, exit 1.
func TestCheckCannotRead(t *testing.T) {
	dir := t.TempDir()
	code, stdout, _ := runInProcess(t, "check", "-c", dir)
	if code != 1 || !strings.Contains(stdout, "what_happened: configuration file cannot be read\n") || !strings.Contains(stdout, "is a directory") {
		t.Errorf("directory: exit %d\n%s", code, stdout)
	}

	if _, err := os.Stat("/etc/bal/config.yaml"); err == nil {
		t.Skip("/etc/bal/config.yaml exists: the no-home case would read it")
	}
	t.Setenv("HOME", "")
	var out, errb strings.Builder
	t.Setenv("BAL_HOME", "")
	code = run([]string{"check", "--json"}, &out, &errb)
	var doc map[string]any
	if err := json.Unmarshal([]byte(out.String()), &doc); err != nil || code != 1 || doc["valid"] != false {
		t.Errorf("no home: exit %d, %v\n%s", code, err, out.String())
	}
	if errs, _ := doc["errors"].([]any); len(errs) != 1 || !strings.Contains(fmt.Sprint(errs[0]), "set BAL_HOME") {
		t.Errorf("no home: errors %v", doc["errors"])
	}
}
