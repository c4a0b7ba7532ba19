package lifecycle_test

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// Test 3: invalid configs on SIGHUP, in turn, while clients connect: a
// syntax error, an unknown key, port 70000, an empty backend list, a
// listen address held by another process, an unreadable file. Pass, for
// each: 0 client errors; afterwards 30 sequential connections hit exactly
// the old config's backends in round-robin order; the rejection is logged
// within 1 s naming the file and line (the address, for the bind failure:
// the file itself is valid); status shows last_reload failed with the
// message and its time, reload_failures +1; then a valid reload succeeds.
//
// bal runs as uid 65534 (when the test runs as root) so that a chmod 000
// file is really unreadable to it.
func TestInvalidReload(t *testing.T) {
	var opts []baltest.Option
	asUser := os.Geteuid() == 0
	var dir string
	if asUser {
		binReachable(t)
		dir = baltest.SharedTempDir(t)
		baltest.MkdirAs(t, dir+"/home", 0o700, baltest.Nobody, baltest.Nobody)
		opts = append(opts, baltest.AsUser(baltest.Nobody, baltest.Nobody), baltest.Home(dir+"/home"))
	}
	names := []string{"a", "b", "c"}
	var addrs []string
	for _, n := range names {
		addrs = append(addrs, baltest.NewBackend(t, baltest.Name(n)).Addr())
	}
	intruder := baltest.NewBackend(t, baltest.Name("d")) // only in the rejected files
	cfg := baltest.Config{Port: baltest.FreePort(t), LogLevel: "info", Backends: addrs, Runtime: quietRuntime()}
	p := baltest.Start(t, cfg, opts...)

	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	heldPort := held.Addr().(*net.TCPAddr).Port

	withIntruder := cfg
	withIntruder.Backends = append(slices.Clone(addrs), intruder.Addr())
	valid := withIntruder.String()
	cases := []struct {
		name    string
		content string
		prepare func()
		want    []string // substrings of the logged error
	}{
		{"syntax error", valid + "  - {host: 127.0.0.1, port: [\n", nil, []string{p.ConfigPath, "line "}},
		{"unknown key", strings.Replace(valid, "method:", "prot: 1\nmethod:", 1), nil, []string{p.ConfigPath, "line ", `unknown key "prot"`}},
		{"port 70000", strings.Replace(valid, fmt.Sprintf("port: %d\n", cfg.Port), "port: 70000\n", 1), nil, []string{p.ConfigPath, "line 2", "70000"}},
		{"empty backend list", valid[:strings.Index(valid, "backends:")] + "backends: []\n", nil, []string{p.ConfigPath, "line ", "backends"}},
		{"listen address in use", strings.Replace(valid, fmt.Sprintf("port: %d\n", cfg.Port), fmt.Sprintf("port: %d\n", heldPort), 1), nil,
			[]string{fmt.Sprintf("127.0.0.1:%d", heldPort)}},
		{"unreadable file", valid, func() {
			if err := os.Chmod(p.ConfigPath, 0); err != nil {
				t.Fatal(err)
			}
		}, []string{p.ConfigPath, "permission denied"}},
	}

	var results []string
	pass := true
	for _, tc := range cases {
		if tc.name == "unreadable file" && !asUser {
			results = append(results, tc.name+": skipped (not root: cannot run bal as another user, and a chmod 000 file stays readable to root)")
			continue
		}
		before := p.Status()
		load := startWhoLoad(p.Addr(), 4)
		time.Sleep(100 * time.Millisecond)
		baltest.WriteFile(t, p.ConfigPath, tc.content)
		if tc.prepare != nil {
			tc.prepare()
		}
		sent := time.Now()
		e := p.Reload(nil)
		took := time.Since(sent)
		time.Sleep(100 * time.Millisecond)
		served, failed, firstErr := load.Stop()
		_ = os.Chmod(p.ConfigPath, 0o600)

		after := p.Status()
		lr, _ := after["last_reload"].(map[string]any)
		lrErr, _ := lr["error"].(string)
		lrTime, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(lr["time"]))
		dFail := baltest.Number(after, "reload_failures") - baltest.Number(before, "reload_failures")
		dOK := baltest.Number(after, "reloads") - baltest.Number(before, "reloads")
		msg := e.Attr("error")
		var missing []string
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				missing = append(missing, w)
			}
		}
		t.Logf("%s: logged %q", tc.name, msg)
		order, rr := probeRR(p.Addr(), 30, names)
		ok := e.Msg == baltest.RejectedMsg && len(missing) == 0 && took <= time.Second &&
			lr != nil && lr["ok"] == false && lrErr != "" && !lrTime.Before(sent.Add(-time.Second)) && !lrTime.After(time.Now()) &&
			dFail == 1 && dOK == 0 && failed == 0 && served > 0 && rr && intruder.Accepted() == 0
		if !ok {
			pass = false
			t.Errorf("%s: outcome %q after %v, error %q (missing %q); last_reload %v; failures +%v, reloads +%v; clients %d ok %d failed (%s); RR order %v %v; intruder accepted %d",
				tc.name, e.Msg, took, msg, missing, lr, dFail, dOK, served, failed, firstErr, rr, order, intruder.Accepted())
		}
		results = append(results, fmt.Sprintf("%s: rejected in %s, clients %d/%d ok, RR kept %v", tc.name, ms(took), served-failed, served, rr))
	}

	// A valid file now goes through (and brings the fourth backend in).
	before := p.Status()
	e := p.Reload(&withIntruder)
	after := p.Status()
	lr, _ := after["last_reload"].(map[string]any)
	validOK := e.Msg == "reloaded" && lr["ok"] == true && baltest.Number(after, "reloads")-baltest.Number(before, "reloads") == 1
	if !validOK {
		pass = false
		t.Errorf("valid reload after the rejections: %q %s; last_reload %v", e.Msg, e.Attr("error"), lr)
	}
	who := fmt.Sprintf("bal as uid %d", baltest.Nobody)
	if !asUser {
		who = "bal as the test's user"
	}
	baltest.Record(t, 3, fmt.Sprintf("%s: %s; then a valid reload applied %v", who, strings.Join(results, "; "), validOK), pass)
}

// whoLoad is a few clients connecting in a loop, each reading a backend's
// name.
type whoLoad struct {
	stop           chan struct{}
	wg             sync.WaitGroup
	served, failed atomic.Int64
	first          atomic.Value
}

func startWhoLoad(addr string, clients int) *whoLoad {
	l := &whoLoad{stop: make(chan struct{})}
	for range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				l.served.Add(1)
				if _, err := baltest.Who(addr); err != nil {
					l.failed.Add(1)
					l.first.CompareAndSwap(nil, err.Error())
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	return l
}

func (l *whoLoad) Stop() (served, failed int64, first string) {
	close(l.stop)
	l.wg.Wait()
	first, _ = l.first.Load().(string)
	return l.served.Load(), l.failed.Load(), first
}

// probeRR makes n sequential connections and reports the names seen and
// whether they follow round robin over names exactly: every window of
// len(names) consecutive answers holds each name once, in a fixed cycle.
func probeRR(addr string, n int, names []string) ([]string, bool) {
	var seq []string
	for range n {
		name, err := baltest.Who(addr)
		if err != nil {
			name = "error: " + err.Error()
		}
		seq = append(seq, name)
	}
	k := len(names)
	ok := len(seq) >= k
	for i := range seq {
		if i >= k && seq[i] != seq[i-k] {
			ok = false
		}
		if !slices.Contains(names, seq[i]) {
			ok = false
		}
	}
	if ok {
		first := slices.Clone(seq[:k])
		slices.Sort(first)
		sorted := slices.Clone(names)
		slices.Sort(sorted)
		ok = slices.Equal(first, sorted)
	}
	return seq, ok
}
