package lifecycle_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// repoRoot is the module root (this file is cmd/bal/reliability/lifecycle).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "..")
}

// fuzzCorpus returns the inputs of engine/config's FuzzParse corpus by
// file name (the "go test fuzz v1" format: one []byte("...") value).
func fuzzCorpus(t testing.TB) map[string]string {
	t.Helper()
	dir := filepath.Join(repoRoot(), "engine", "config", "testdata", "fuzz", "FuzzParse")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			if inner, ok := strings.CutPrefix(line, "[]byte("); ok && strings.HasSuffix(inner, ")") {
				s, err := strconv.Unquote(strings.TrimSuffix(inner, ")"))
				if err != nil {
					t.Fatalf("corpus %s: %v", e.Name(), err)
				}
				out[e.Name()] = s
			}
		}
		f.Close()
	}
	if len(out) == 0 {
		t.Fatalf("no corpus entries in %s", dir)
	}
	return out
}

// seedConfigs are valid configs of the repository: the sample files, the
// CLI's test configs and one advanced config of every runtime key.
func seedConfigs(t testing.TB) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, rel := range []string{
		"sample/config.yaml", "sample/config.advanced.yaml",
		"cmd/bal/testdata/configs/valid.yaml", "cmd/bal/testdata/configs/warnings.yaml", "cmd/bal/testdata/configs/invalid.yaml",
	} {
		b, err := os.ReadFile(filepath.Join(repoRoot(), rel))
		if err != nil {
			t.Fatal(err)
		}
		out[rel] = string(b)
	}
	out["every runtime key"] = `mode: advanced
port: 9295
bind_address: 127.0.0.1
method: least_connections
log_level: info
backends:
  - {host: 127.0.0.1, port: 9000, weight: 3}
  - {host: "::1", port: 9001}
  - {host: localhost, port: 9002, weight: 256}
runtime:
  health_check_interval_ms: 1000
  health_check_timeout_ms: 500
  health_check_fail_threshold: 2
  health_check_success_threshold: 2
  backend_connect_timeout_ms: 400
  failover_backoff_initial_ms: 100
  failover_backoff_max_ms: 5000
  backend_cooldown_ms: 0
  protection_trigger_threshold: 10
  protection_window_ms: 30000
  protection_stable_success_threshold: 12
  max_concurrent_connections: 1000
  connection_idle_timeout_ms: 60000
  overload_policy: reject
  tcp_backlog: 128
  drain_timeout_ms: 1000
  proxy_protocol: v2
  metrics_address: 127.0.0.1:9911
  access_log: true
`
	return out
}

// tokens replace values in mutations.
var tokens = []string{"0", "-1", "1", "65535", "65536", "70000", "2592000001", "99999999999999999999", "1.5", "0x10",
	"08080", `"9295"`, "yes", "true", "null", "~", "", "[]", "{}", "[1, 2]", "abc", `""`, "'::1'", "[::1]", "::",
	"0.0.0.0", "localhost", "std", "gnet", "auto", "v1", "v3", "debug", "loud", "&a x", "*a", "!!str 5"}

// mutate derives a config from s with one to three random edits.
func mutate(r *rand.Rand, s string) string {
	for range 1 + r.IntN(3) {
		lines := strings.Split(s, "\n")
		i := r.IntN(len(lines))
		switch r.IntN(9) {
		case 0: // delete a line
			lines = append(lines[:i], lines[i+1:]...)
		case 1: // duplicate a line
			lines = append(lines[:i+1], lines[i:]...)
		case 2, 3, 4: // replace a value
			if k, _, ok := strings.Cut(lines[i], ":"); ok {
				lines[i] = k + ": " + tokens[r.IntN(len(tokens))]
			}
		case 5: // an unknown or misspelt key
			lines = append(lines[:i], append([]string{[]string{"prot: 1", "  helth_check_interval_ms: 5", "extra: true", "runtime:", "  - host: x"}[r.IntN(5)]}, lines[i:]...)...)
		case 6: // indentation
			lines[i] = []string{"  ", "\t", ""}[r.IntN(3)] + strings.TrimLeft(lines[i], " ")
		case 7: // truncate
			return strings.Join(lines, "\n")[:r.IntN(len(s)+1)]
		case 8: // flip a byte
			b := []byte(strings.Join(lines, "\n"))
			if len(b) > 0 {
				const set = "x:-[]{}#&*!|>'\"\n %@`"
				b[r.IntN(len(b))] = set[r.IntN(len(set))]
			}
			return string(b)
		}
		s = strings.Join(lines, "\n")
	}
	return s
}

// Test 4: `bal check` agrees with a reload of the same file, over valid
// configs, their mutations and the config fuzz corpus (fast: ~100 files;
// soak: 2,000). bal runs in its own network namespace, so whatever port or
// bind_address a file names is bound there and nowhere else. Pass: check
// exits only 0 or 1, each in < 1 s, never with a Go panic; check says
// invalid ⇔ the reload is rejected as an invalid config. A valid file may
// still be rejected at reload for what check by design does not look at
// (a bind_address not on this host, engine switch on the same address, a
// name that does not resolve): those are counted and listed, not
// disagreements.
func TestCheckAgreesWithReload(t *testing.T) {
	baltest.NeedRoot(t)
	total := baltest.Pick(100, 2000)
	ns := baltest.NetNS(t)
	be := "127.0.0.1:9000"
	p := baltest.Start(t, baltest.Config{Port: 9295, Backends: []string{be}, Runtime: quietRuntime()}, baltest.InNetNS(ns))
	ctl := baltest.NewControl(p.Home)
	defer ctl.Close()
	host := baltest.Runner{Home: p.Home, UID: -1}

	// The inputs: seeds, the corpus, then mutations of both.
	type input struct{ name, content string }
	var inputs []input
	seeds := seedConfigs(t)
	corpus := fuzzCorpus(t)
	for _, m := range []map[string]string{seeds, corpus} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			inputs = append(inputs, input{k, m[k]})
		}
	}
	bases := append([]input(nil), inputs...)
	r := rand.New(rand.NewPCG(4, uint64(total)))
	for i := 0; len(inputs) < total; i++ {
		b := bases[r.IntN(len(bases))]
		inputs = append(inputs, input{fmt.Sprintf("mutation %d of %s", i, b.name), mutate(r, b.content)})
	}

	var agree, bothValid, bothInvalid, envRejected int
	var disagreements, envReasons, badExits []string
	var slowest time.Duration
	st, err := ctl.Status()
	if err != nil {
		t.Fatal(err)
	}
	seen := baltest.Number(st, "reloads") + baltest.Number(st, "reload_failures")
	for _, in := range inputs {
		baltest.WriteFile(t, p.ConfigPath, in.content)
		res := host.Run(t, 10*time.Second, "check", "-c", p.ConfigPath)
		slowest = max(slowest, res.Took)
		if res.Code != 0 && res.Code != 1 || res.TimedOut || strings.Contains(res.Stderr+res.Stdout, "goroutine ") {
			badExits = append(badExits, fmt.Sprintf("%s: exit %d %s", in.name, res.Code, clip(res.Stderr)))
			continue
		}
		if res.Took > time.Second {
			badExits = append(badExits, fmt.Sprintf("%s: check took %v", in.name, res.Took))
		}
		p.Signal(syscall.SIGHUP)
		var lr map[string]any
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(2 * time.Millisecond) {
			st, err := ctl.Status()
			if err == nil && baltest.Number(st, "reloads")+baltest.Number(st, "reload_failures") > seen {
				seen = baltest.Number(st, "reloads") + baltest.Number(st, "reload_failures")
				lr, _ = st["last_reload"].(map[string]any)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: no reload outcome within 10 s (status error %v); bal alive %v", in.name, err, baltest.Alive(p.PID()))
			}
		}
		reloadOK := lr["ok"] == true
		reason, _ := lr["error"].(string)
		checkOK := res.Code == 0
		switch {
		case checkOK && reloadOK:
			agree++
			bothValid++
		case !checkOK && !reloadOK && strings.Contains(reason, "invalid config"):
			agree++
			bothInvalid++
		case strings.Contains(reason, "another process"):
			// Nothing else runs in this namespace: a port "held by
			// another process" can only be bal's own listener, and the
			// message must say so.
			disagreements = append(disagreements, fmt.Sprintf("%s: misleading rejection %q", in.name, reason))
		case checkOK && !reloadOK && !strings.Contains(reason, "invalid config") && !strings.Contains(reason, "config file"):
			agree++
			envRejected++
			if !slices.Contains(envReasons, clip(reason)) {
				envReasons = append(envReasons, clip(reason))
			}
		default:
			disagreements = append(disagreements, fmt.Sprintf("%s: check exit %d, reload ok %v (%s)\n%s", in.name, res.Code, reloadOK, reason, clip(in.content)))
		}
	}
	alive := baltest.Alive(p.PID())
	for i, d := range disagreements {
		if i < 5 {
			t.Errorf("disagreement: %s", d)
		}
	}
	for i, b := range badExits {
		if i < 5 {
			t.Errorf("bad check run: %s", b)
		}
	}
	pass := alive && len(disagreements) == 0 && len(badExits) == 0 && agree == len(inputs)
	baltest.Record(t, 4, fmt.Sprintf("%s: %d configs (%d seeds, %d fuzz corpus, rest mutations): agree %d/%d (both valid %d, both invalid %d, valid but rejected at reload by the environment %d: %s); check exits other than 0/1 or slower than 1 s: %d; slowest check %s; bal alive %v",
		variant(), len(inputs), len(seeds), len(corpus), agree, len(inputs), bothValid, bothInvalid, envRejected, strings.Join(envReasons, " | "), len(badExits), ms(slowest), alive), pass)
}

// Test 29 (the part that runs every time): the whole config fuzz corpus
// through `bal check`, plain and --json: exit 0 or 1 only, never a Go panic
// trace, exactly one JSON document, each in < 1 s.
func TestCheckFuzzCorpus(t *testing.T) {
	corpus := fuzzCorpus(t)
	dir := t.TempDir()
	r := baltest.Runner{Home: filepath.Join(dir, "home"), UID: -1}
	var bad []string
	var valid, invalid int
	var slowest time.Duration
	for name, content := range corpus {
		path := filepath.Join(dir, name+".yaml")
		baltest.WriteFile(t, path, content)
		for _, args := range [][]string{{"check", "-c", path}, {"check", "--json", "-c", path}, {"check", "--strict", "--verbose", "-c", path}} {
			res := r.Run(t, 10*time.Second, args...)
			slowest = max(slowest, res.Took)
			switch {
			case res.TimedOut || res.Code != 0 && res.Code != 1:
				bad = append(bad, fmt.Sprintf("%s %v: exit %d %s", name, args, res.Code, clip(res.Stderr)))
			case strings.Contains(res.Stdout+res.Stderr, "panic") || strings.Contains(res.Stderr, "goroutine "):
				bad = append(bad, fmt.Sprintf("%s %v: panic output %s", name, args, clip(res.Stderr)))
			case res.Took > time.Second:
				bad = append(bad, fmt.Sprintf("%s %v: took %v", name, args, res.Took))
			}
			if args[1] == "--json" {
				var doc map[string]any
				dec := json.NewDecoder(strings.NewReader(res.Stdout))
				if err := dec.Decode(&doc); err != nil || dec.More() {
					bad = append(bad, fmt.Sprintf("%s --json: not exactly one JSON document (%v): %s", name, err, clip(res.Stdout)))
				} else if (doc["valid"] == true) != (res.Code == 0) {
					bad = append(bad, fmt.Sprintf("%s --json: valid %v but exit %d", name, doc["valid"], res.Code))
				}
			}
			if len(args) == 3 {
				if res.Code == 0 {
					valid++
				} else {
					invalid++
				}
			}
		}
	}
	for _, b := range bad {
		t.Error(b)
	}
	baltest.Record(t, 29, fmt.Sprintf("config fuzz corpus through bal check (plain, --json, --strict --verbose): %d inputs, %d valid, %d invalid, %d bad runs (exit not 0/1, panic, > 1 s, JSON not one document); slowest %s",
		len(corpus), valid, invalid, len(bad), ms(slowest)), len(bad) == 0)
}
