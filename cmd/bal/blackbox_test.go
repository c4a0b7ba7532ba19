package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
	"github.com/bal-lb/bal/engine/config"
)

// runBal runs the real binary with BAL_HOME (and HOME) set to home, in dir.
// A command still running after a minute fails the test.
func runBal(t *testing.T, dir, home string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	r := baltest.Runner{Home: home, UID: -1, GID: -1, Dir: dir}.Run(t, time.Minute, args...)
	if r.TimedOut {
		t.Fatalf("bal %v still running after a minute:\n%s%s", args, r.Stdout, r.Stderr)
	}
	return r.Code, r.Stdout, r.Stderr
}

// checkJSON is the part of bal check --json the black-box tests read.
type checkJSON struct {
	ConfigPath   string         `json:"config_path"`
	Mode         *string        `json:"mode"`
	Valid        bool           `json:"valid"`
	Errors       []config.Issue `json:"errors"`
	Warnings     []string       `json:"warnings"`
	BackendCount int            `json:"backend_count"`
}

func decodeOne(t *testing.T, s string) checkJSON {
	t.Helper()
	var v checkJSON
	dec := json.NewDecoder(strings.NewReader(s))
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("stdout is not JSON (%v): %q", err, s)
	}
	if dec.More() {
		t.Fatalf("stdout holds more than one JSON document: %q", s)
	}
	return v
}

func TestBlackBoxCheck(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	files := map[string]string{
		"valid.yaml":   "bind_address: 127.0.0.1\nbackends:\n  - {host: 127.0.0.1, port: 9000}\n  - {host: 127.0.0.1, port: 9100}\n",
		"invalid.yaml": "bind_address: 127.0.0.1\nport: 0\nmethod: fastest\nbackends:\n  - {host: 127.0.0.1, port: 9000, wieght: 2}\n",
		"warn.yaml":    "bind_address: \"::\"\nbackends:\n  - {host: 127.0.0.1, port: 9000}\n",
		"garbage.yaml": "backends: [\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	abs := func(name string) string { return filepath.Join(dir, name) }

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
	}{
		{"valid", []string{"check", "-c", "valid.yaml"}, 0, "bal check\n  result: OK\n  mode: simple\n  backends: 2\n  warnings: 0\n  next: run 'bal doctor'\n"},
		{"valid strict", []string{"check", "--strict", "-c", abs("valid.yaml")}, 0, "  result: OK\n"},
		{"invalid", []string{"check", "-c", "invalid.yaml"}, 1, "  result: FAILED\n"},
		{"invalid strict", []string{"check", "-c", "invalid.yaml", "--strict"}, 1, "  errors: 3\n"},
		{"warnings", []string{"check", "-c", "warn.yaml"}, 0, "  warnings: 1\n  what_happened: configuration is usable but has warnings\n"},
		{"warnings strict", []string{"check", "-c", "warn.yaml", "--strict"}, 1, "  result: FAILED\n"},
		{"broken YAML", []string{"check", "-c", "garbage.yaml"}, 1, "first_error: line 1: invalid YAML"},
		{"missing", []string{"check", "-c", "nope.yaml"}, 1, "what_happened: configuration file not found\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := runBal(t, dir, home, tt.args...)
			if code != tt.code || !strings.Contains(stdout, tt.stdout) || stderr != "" {
				t.Errorf("exit %d (want %d)\nstdout: %s(want it to contain %q)\nstderr: %s", code, tt.code, stdout, tt.stdout, stderr)
			}
		})
	}

	// --json: exactly one document on stdout, whatever the outcome, and the
	// relative -c resolved against the command's working directory.
	jsonTests := []struct {
		file    string
		strict  bool
		code    int
		valid   bool
		errors  int
		warns   int
		mode    string // "" = null
		lineOf0 int
	}{
		{"valid.yaml", false, 0, true, 0, 0, "simple", 0},
		{"invalid.yaml", false, 1, false, 3, 0, "simple", 2},
		{"warn.yaml", false, 0, true, 0, 1, "simple", 0},
		{"warn.yaml", true, 1, true, 0, 1, "simple", 0},
		{"garbage.yaml", false, 1, false, 1, 0, "", 1},
		{"nope.yaml", false, 1, false, 1, 0, "", 0},
	}
	for _, tt := range jsonTests {
		t.Run(fmt.Sprintf("json %s strict=%v", tt.file, tt.strict), func(t *testing.T) {
			args := []string{"check", "--json", "-c", tt.file}
			if tt.strict {
				args = append(args, "--strict")
			}
			code, stdout, stderr := runBal(t, dir, home, args...)
			if code != tt.code || stderr != "" {
				t.Errorf("exit %d (want %d), stderr %q", code, tt.code, stderr)
			}
			v := decodeOne(t, stdout)
			if v.ConfigPath != abs(tt.file) {
				t.Errorf("config_path = %q, want %q", v.ConfigPath, abs(tt.file))
			}
			if v.Valid != tt.valid || len(v.Errors) != tt.errors || len(v.Warnings) != tt.warns {
				t.Errorf("valid=%v errors=%v warnings=%v", v.Valid, v.Errors, v.Warnings)
			}
			if (tt.mode == "") != (v.Mode == nil) || v.Mode != nil && *v.Mode != tt.mode {
				t.Errorf("mode = %v, want %q", v.Mode, tt.mode)
			}
			if tt.errors > 0 && v.Errors[0].Line != tt.lineOf0 {
				t.Errorf("errors[0] = %+v, want line %d", v.Errors[0], tt.lineOf0)
			}
		})
	}
	t.Run("json errors carry lines", func(t *testing.T) {
		_, stdout, _ := runBal(t, dir, home, "check", "--json", "-c", "invalid.yaml")
		v := decodeOne(t, stdout)
		var got []string
		for _, e := range v.Errors {
			got = append(got, fmt.Sprintf("%d %s", e.Line, e.Message))
		}
		want := []string{
			"2 port must be an integer from 1 to 65535, got 0",
			`3 method must be one of round_robin, least_connections, random_two, source_hash; got "fastest"`,
			`5 backends[0]: unknown key "wieght"; did you mean "weight"?`,
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("errors =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})
}

// TestBlackBoxLookup: without -c, bal check reads $BAL_HOME/config.yaml, and
// the default file written there passes --strict.
func TestBlackBoxLookup(t *testing.T) {
	home := filepath.Join(t.TempDir(), "bal-home")
	code, stdout, _ := runBal(t, t.TempDir(), home, "check", "--json")
	if v := decodeOne(t, stdout); code != 1 || v.ConfigPath != filepath.Join(home, "config.yaml") || v.Valid {
		t.Errorf("empty BAL_HOME: exit %d, %+v", code, v)
	}
	path, err := config.WriteDefault(home)
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runBal(t, t.TempDir(), home, "check", "--strict", "--verbose")
	if code != 0 || !strings.Contains(stdout, "  config: "+path+"\n") || !strings.Contains(stdout, "  warnings: 0\n") {
		t.Errorf("default file: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	st, err := os.Stat(home)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("BAL_HOME mode %v (%v), want 0700", st.Mode().Perm(), err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v (%v), want 0600", st.Mode().Perm(), err)
	}
}

func TestBlackBoxCLI(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"--version"}, 0, fmt.Sprintf("bal %s (%s, %s/%s)\n", baltest.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH), ""},
		{nil, 2, "", "bal: missing command (see 'bal --help')\n"},
		{[]string{"check", "--frobnicate"}, 2, "", "bal check: unknown flag: --frobnicate (see 'bal check --help')\n"},
		{[]string{"status", "--help"}, 0, "Usage: bal status [-c FILE] [--brief] [--json] [--verbose]\n", ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			code, stdout, stderr := runBal(t, dir, dir, tt.args...)
			if code != tt.code || !strings.HasPrefix(stdout, tt.stdout) || stderr != tt.stderr || (tt.stdout == "" && stdout != "") {
				t.Errorf("exit %d (want %d)\nstdout %q (want prefix %q)\nstderr %q (want %q)", code, tt.code, stdout, tt.stdout, stderr, tt.stderr)
			}
		})
	}
}
