package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckGolden pins bal check's human (concise and verbose) and JSON
// output. Regenerate with: go test ./cmd/bal -run TestCheckGolden -update
func TestCheckGolden(t *testing.T) {
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		golden string
		config string
		flags  []string
		code   int
	}{
		{"valid.txt", "valid.yaml", nil, 0},
		{"valid_verbose.txt", "valid.yaml", []string{"--verbose"}, 0},
		{"valid.json", "valid.yaml", []string{"--json"}, 0},
		{"invalid.txt", "invalid.yaml", nil, 1},
		{"invalid_verbose.txt", "invalid.yaml", []string{"--verbose"}, 1},
		{"invalid.json", "invalid.yaml", []string{"--json"}, 1},
		{"warnings.txt", "warnings.yaml", nil, 0},
		{"warnings_verbose.txt", "warnings.yaml", []string{"--verbose"}, 0},
		{"warnings.json", "warnings.yaml", []string{"--json"}, 0},
		{"warnings_strict.txt", "warnings.yaml", []string{"--strict"}, 1},
		{"warnings_strict_verbose.txt", "warnings.yaml", []string{"--strict", "--verbose"}, 1},
		{"warnings_strict.json", "warnings.yaml", []string{"--strict", "--json"}, 1},
		{"missing.txt", "missing.yaml", nil, 1},
		{"missing_verbose.txt", "missing.yaml", []string{"--verbose"}, 1},
		{"missing.json", "missing.yaml", []string{"--json"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			args := append([]string{"check", "-c", filepath.Join("testdata", "configs", tt.config)}, tt.flags...)
			code, stdout, stderr := runInProcess(t, args...)
			if code != tt.code || stderr != "" {
				t.Errorf("exit %d (want %d), stderr %q", code, tt.code, stderr)
			}
			// Paths are absolute; make them relative to the package so the
			// golden files do not depend on where the repository is.
			got := strings.ReplaceAll(stdout, cwd+string(filepath.Separator), "")
			if strings.HasSuffix(tt.golden, ".json") {
				var doc map[string]any
				dec := json.NewDecoder(strings.NewReader(stdout))
				if err := dec.Decode(&doc); err != nil || dec.More() {
					t.Fatalf("stdout is not exactly one JSON document (%v): %s", err, stdout)
				}
				for _, k := range []string{"config_path", "mode", "valid", "errors", "warnings", "backend_count"} {
					if _, ok := doc[k]; !ok {
						t.Errorf("JSON lacks the stable field %q", k)
					}
				}
			}
			path := filepath.Join("testdata", "golden", "check_"+tt.golden)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("output differs from %s (run with -update if the change is intended)\n--- got\n%s--- want\n%s", path, got, want)
			}
		})
	}
}
