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
		{"services_valid.txt", "services_valid.yaml", nil, 0},
		{"services_valid_strict.txt", "services_valid.yaml", []string{"--strict"}, 0},
		{"services_valid.json", "services_valid.yaml", []string{"--json"}, 0},
		{"services_warnings.txt", "services_warnings.yaml", nil, 0},
		{"services_warnings_verbose.txt", "services_warnings.yaml", []string{"--verbose"}, 0},
		{"services_warnings_strict.json", "services_warnings.yaml", []string{"--strict", "--json"}, 1},
		{"services_invalid.txt", "services_invalid.yaml", nil, 1},
		{"services_invalid_verbose.txt", "services_invalid.yaml", []string{"--verbose"}, 1},
		{"services_invalid.json", "services_invalid.yaml", []string{"--json"}, 1},
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
				for _, k := range []string{"config_path", "mode", "valid", "errors", "warnings", "backend_count", "services"} {
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

// TestCheckSampleConfigs: every config under sample/ passes bal check
// --strict, and the complete multi-service example of
// docs/configuration.md is sample/config.services.yaml, byte for byte.
func TestCheckSampleConfigs(t *testing.T) {
	samples, err := filepath.Glob(filepath.Join("..", "..", "sample", "config*.yaml"))
	if err != nil || len(samples) < 3 {
		t.Fatalf("sample configs %v (%v)", samples, err)
	}
	for _, path := range samples {
		t.Run(filepath.Base(path), func(t *testing.T) {
			code, stdout, stderr := runInProcess(t, "check", "--strict", "--json", "-c", path)
			var res checkResult
			if err := json.Unmarshal([]byte(stdout), &res); err != nil {
				t.Fatalf("%v: %s", err, stdout)
			}
			if code != 0 || stderr != "" || !res.Valid || len(res.Warnings) != 0 || len(res.Services) == 0 {
				t.Errorf("exit %d, stderr %q, result %+v", code, stderr, res)
			}
		})
	}

	sample, err := os.ReadFile(filepath.Join("..", "..", "sample", "config.services.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	docs, err := os.ReadFile(filepath.Join("..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(docs), "```yaml\n"+string(sample)+"```\n") {
		t.Error("docs/configuration.md does not show sample/config.services.yaml verbatim in a yaml block")
	}
	code, stdout, _ := runInProcess(t, "check", "--json", "-c", filepath.Join("..", "..", "sample", "config.services.yaml"))
	var res checkResult
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || code != 0 {
		t.Fatalf("exit %d: %v", code, err)
	}
	// What the docs promise of the example: web on 443 routed by SNI to two
	// pools plus a default pool, postgres on 5432.
	web, pg := res.Services[0], res.Services[1]
	if web.Name != "web" || web.Listen != "127.0.0.1:443" || len(web.Routes) != 2 || !web.Inspects || len(web.Routes[0].Match.SNI) == 0 ||
		web.BackendCount <= web.Routes[0].BackendCount+web.Routes[1].BackendCount {
		t.Errorf("web = %+v", web)
	}
	if pg.Name != "postgres" || pg.Listen != "127.0.0.1:5432" {
		t.Errorf("postgres = %+v", pg)
	}
}
