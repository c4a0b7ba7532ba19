//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// The status page (docs/operations.md#status-page) in a real browser:
// Debian's chromium, headless, installed by the test when missing.
//
// Method: the first look is chromium --dump-dom with a virtual-time budget
// (the page's script fetches status and renders; its 2 s timer fires
// without waiting), parsed for one row per backend. The live change is
// watched in one long-lived chromium driven over the DevTools protocol on
// --remote-debugging-pipe: the test kills a backend, notes when bal's own
// status reports it down, and reads the row's rendered health with
// Runtime.evaluate every 50 ms, never navigating; a marker set in the
// page's window at the start, the navigation count and the growing refresh
// counter prove the page was not reloaded. No configured string of a
// valid config can hold "<" except ALPN values (any 1–255 bytes), so the
// real bal gets routes whose alpn values are markup; the literal
// "backend named <script>" case uses the page served by bal with a status
// document from a test server (the page fetches the relative URL status).

// pageRow is one backend row of the rendered page.
type pageRow struct{ health, admin, text string }

var rowRE = regexp.MustCompile(`(?s)<tr data-service="([^"]*)" data-pool="([^"]*)" data-backend="([^"]*)">(.*?)</tr>`)
var cellRE = regexp.MustCompile(`data-field="(health|admin)" data-value="([a-z]+)"`)

// pageRows parses the dumped DOM's backend rows: "service/pool address" →
// what it shows.
func pageRows(dom string) map[string]pageRow {
	rows := map[string]pageRow{}
	for _, m := range rowRE.FindAllStringSubmatch(dom, -1) {
		r := pageRow{text: m[4]}
		for _, c := range cellRE.FindAllStringSubmatch(m[4], -1) {
			if c[1] == "health" {
				r.health = c[2]
			} else {
				r.admin = c[2]
			}
		}
		rows[m[1]+"/"+m[2]+" "+m[3]] = r
	}
	return rows
}

// refreshCount is how many times the page rendered a status (0 while it
// is still loading).
const refreshCount = `(() => { const u = document.getElementById("updated"); return u ? Number(u.getAttribute("data-refreshes")) : 0; })()`

const alpnScript = `<script>document.title='pwned'</script>`
const alpnImg = `<img src=x onerror="window.pwned=1">`

// pageBal is a bal with two services for the page's tests: web routes
// clients offering one of alpn to b3 and the others to b1 and b2 (drained);
// db balances b4 (in maintenance) and dead (nothing listens). It returns
// the page's URL on metrics_address.
type pageBal struct {
	p              *baltest.Proc
	b1, b2, b3, b4 *baltest.Backend
	dead, url      string
}

func startPageBal(t *testing.T, alpn ...string) *pageBal {
	t.Helper()
	pb := &pageBal{
		b1: baltest.NewBackend(t, baltest.NameEcho("b1")), b2: baltest.NewBackend(t, baltest.NameEcho("b2")),
		b3: baltest.NewBackend(t, baltest.NameEcho("b3")), b4: baltest.NewBackend(t, baltest.NameEcho("b4")),
		dead: fmt.Sprintf("127.0.0.1:%d", baltest.FreePort(t)),
	}
	web, db, metricsPort := baltest.FreePort(t), baltest.FreePort(t), baltest.FreePort(t)
	hostPort := func(a string) string {
		h, p, _ := net.SplitHostPort(a)
		return fmt.Sprintf("{host: %q, port: %s}", h, p)
	}
	quoted := make([]string, len(alpn))
	for i, a := range alpn {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	yaml := fmt.Sprintf(`mode: advanced
log_level: debug
runtime:
  metrics_address: "127.0.0.1:%d"
  health_check_interval_ms: 200
  health_check_timeout_ms: 500
  health_check_fail_threshold: 1
  drain_timeout_ms: 1000
services:
  - name: web
    bind_address: 127.0.0.1
    port: %d
    backends: [%s, %s]
    routes:
      - name: api
        match:
          alpn: [%s]
        backends: [%s]
  - name: db
    bind_address: 127.0.0.1
    port: %d
    backends: [%s, %s]
`, metricsPort, web, hostPort(pb.b1.Addr()), hostPort(pb.b2.Addr()), strings.Join(quoted, ", "), hostPort(pb.b3.Addr()), db, hostPort(pb.b4.Addr()), hostPort(pb.dead))
	pb.p = baltest.StartYAML(t, yaml, web)
	t.Cleanup(func() { stopGracefully(pb.p) })
	pb.p.WaitHealthRound(10 * time.Second)
	for _, args := range [][]string{{"backend", "drain", pb.b2.Addr(), "--service", "web"}, {"backend", "maint", pb.b4.Addr()}} {
		if code, _, errOut := pb.p.Run(args...); code != 0 {
			t.Fatalf("bal %v: exit %d: %s", args, code, errOut)
		}
	}
	for range 5 { // some traffic: plain TCP, not TLS, goes to web's default pool
		if c, err := net.DialTimeout("tcp", pb.p.Addr(), time.Second); err == nil {
			_, _ = baltest.ReadName(c)
			c.Close()
		}
	}
	pb.url = fmt.Sprintf("http://127.0.0.1:%d/", metricsPort)
	return pb
}

func TestStatusPageInBrowser(t *testing.T) {
	baltest.NeedBinary(t)
	baltest.Chromium(t) // install (or skip) before starting anything
	pb := startPageBal(t, alpnScript, alpnImg)
	p, b1, b2, b3, b4, dead, url := pb.p, pb.b1, pb.b2, pb.b3, pb.b4, pb.dead, pb.url

	t.Run("every backend with its state", func(t *testing.T) {
		dom := baltest.DumpDOM(t, url, 3*time.Second)
		rows := pageRows(dom)
		want := map[string]pageRow{
			"web/api " + b3.Addr():     {health: "up", admin: "ready"},
			"web/default " + b1.Addr(): {health: "up", admin: "ready"},
			"web/default " + b2.Addr(): {health: "up", admin: "drain"},
			"db/default " + b4.Addr():  {health: "up", admin: "maint"},
			"db/default " + dead:       {health: "down", admin: "ready"},
		}
		if len(rows) != len(want) {
			t.Errorf("the page shows %d backend rows, want %d:\n%v", len(rows), len(want), rows)
		}
		for k, w := range want {
			if got, ok := rows[k]; !ok || got.health != w.health || got.admin != w.admin {
				t.Errorf("row %s: health %q admin %q (present %v), want %q %q", k, got.health, got.admin, ok, w.health, w.admin)
			}
		}
		if r := rows["db/default "+dead]; !strings.Contains(r.text, "refused: ") {
			t.Errorf("the dead backend's row shows no last check error: %s", r.text)
		}
		// bal's own view agrees.
		for k, st := range backendStates(t, p) {
			if r, ok := rows[k]; !ok || r.admin != st {
				t.Errorf("bal backend list says %s is %s, the page %q", k, st, r.admin)
			}
		}
		// The ALPN values, markup, are shown as text: escaped in the DOM,
		// no element made from them, the title untouched.
		for _, s := range []string{alpnScript, alpnImg} {
			esc := strings.NewReplacer("<", "&lt;", ">", "&gt;").Replace(s)
			if !strings.Contains(dom, esc) {
				t.Errorf("the page does not show %q as text (want %q in the DOM)", s, esc)
			}
		}
		if strings.Contains(dom, "<img") || strings.Contains(dom, "<script>document.title") || !strings.Contains(dom, "<title>bal status</title>") {
			t.Errorf("markup from the config became elements of the page")
		}
		for _, s := range []string{"web", "db", "route api", "protection", "last reload", "0 ok, 0 rejected", p.ConfigPath} {
			if !strings.Contains(dom, s) {
				t.Errorf("the page lacks %q", s)
			}
		}

	})

	t.Run("screenshot", func(t *testing.T) {
		// A config without markup, for a picture of what operators see
		// (BAL_UPDATE_SCREENSHOT=1 writes it to docs/status-page.png).
		shotBal := startPageBal(t, "h2", "http/1.1")
		shot := filepath.Join(t.TempDir(), "status.png")
		baltest.Screenshot(t, shotBal.url, shot, 1280, 660, 3*time.Second)
		png, err := os.ReadFile(shot)
		if err != nil || len(png) < 10<<10 || string(png[1:4]) != "PNG" {
			t.Fatalf("screenshot: %d bytes, %v", len(png), err)
		}
		if os.Getenv("BAL_UPDATE_SCREENSHOT") != "" {
			_, file, _, _ := runtime.Caller(0)
			docs := filepath.Join(filepath.Dir(file), "..", "..", "docs", "status-page.png")
			if err := os.WriteFile(docs, png, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("wrote %s", docs)
		}
	})

	t.Run("a backend turning down changes the page without a reload", func(t *testing.T) {
		page := baltest.StartBrowser(t).Open(url)
		health := fmt.Sprintf(`(() => { const c = document.querySelector('tr[data-service="web"][data-pool="default"][data-backend=%q] td[data-field="health"]'); return c ? c.getAttribute("data-value") : ""; })()`, b1.Addr())
		refreshes := refreshCount
		var h string
		var n0 int
		for deadline := time.Now().Add(20 * time.Second); h != "up"; time.Sleep(50 * time.Millisecond) {
			if err := page.Eval(health, &h); err != nil {
				t.Fatal(err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("b1 never rendered up (%q)", h)
			}
		}
		if err := page.Eval(`window.__balMarker = 42; `+refreshes, &n0); err != nil {
			t.Fatal(err)
		}
		ctl := baltest.NewControl(p.Home)
		defer ctl.Close()
		killed := time.Now()
		b1.Kill()
		downAt := make(chan time.Time, 1)
		go func() {
			for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
				if st, err := ctl.Status(); err == nil && !backendReachable(st, "web", b1.Addr()) {
					downAt <- time.Now()
					return
				}
			}
			close(downAt)
		}()
		var seenAt time.Time
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if err := page.Eval(health, &h); err != nil {
				t.Fatal(err)
			}
			if h == "down" {
				seenAt = time.Now()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the page still shows b1 %q 20 s after it was killed", h)
			}
		}
		down, ok := <-downAt
		if !ok {
			t.Fatal("bal never reported b1 down")
		}
		var marker, navigations, n1 int
		if err := page.Eval(`window.__balMarker`, &marker); err != nil {
			t.Fatal(err)
		}
		if err := page.Eval(`performance.getEntriesByType("navigation").length`, &navigations); err != nil {
			t.Fatal(err)
		}
		if err := page.Eval(refreshes, &n1); err != nil {
			t.Fatal(err)
		}
		if marker != 42 || navigations != 1 || n1 <= n0 {
			t.Fatalf("the page was reloaded: marker %d, navigations %d, refreshes %d -> %d", marker, navigations, n1, n0)
		}
		lag := seenAt.Sub(down)
		baltest.Record(t, 0, fmt.Sprintf("b1 killed; bal reported it down after %v, the page showed it %v later (bound 3s), without a reload (%d refreshes)",
			down.Sub(killed).Round(time.Millisecond), max(lag, 0).Round(time.Millisecond), n1-n0), lag <= 3*time.Second)
	})

	t.Run("a backend named <script> is shown as text", func(t *testing.T) {
		// bal's own page, with a status document no valid config can
		// produce: markup in a backend's address, a service name, a check
		// error and the config path. The test server sends no
		// Content-Security-Policy, so only the page's own escaping is tested.
		page := httpGet(t, url)
		st := httpGet(t, url+"status")
		var doc map[string]any
		if err := json.Unmarshal([]byte(st), &doc); err != nil {
			t.Fatal(err)
		}
		const addr = `<script>window.pwned=1</script>10.0.0.1:80`
		const svc = `<img src=x onerror="window.pwned=2">`
		const checkErr = `<b id="injected">refused</b>`
		const path = `/etc/<svg onload="window.pwned=3">/config.yaml`
		doc["config_path"] = path
		s0 := doc["services"].([]any)[0].(map[string]any)
		s0["name"] = svc
		be := s0["backends"].([]any)[0].(map[string]any)
		be["address"], be["last_check_error"] = addr, checkErr
		fake, _ := json.Marshal(doc)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/":
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				io.WriteString(w, page)
			case "/status":
				w.Header().Set("Content-Type", "application/json")
				w.Write(fake)
			default:
				http.NotFound(w, r)
			}
		}))
		defer srv.Close()
		tab := baltest.StartBrowser(t).Open(srv.URL + "/")
		var n int
		for deadline := time.Now().Add(20 * time.Second); n < 1; time.Sleep(50 * time.Millisecond) {
			if err := tab.Eval(refreshCount, &n); err != nil {
				t.Fatal(err)
			}
			if time.Now().After(deadline) {
				t.Fatal("the page never rendered the test server's status")
			}
		}
		var got struct {
			Pwned    string   `json:"pwned"`
			Injected bool     `json:"injected"`
			Elements int      `json:"elements"`
			Scripts  int      `json:"scripts"`
			Addr     string   `json:"addr"`
			Attr     string   `json:"attr"`
			Svc      string   `json:"svc"`
			Err      string   `json:"err"`
			Texts    []string `json:"texts"`
		}
		expr := `({
			pwned: typeof window.pwned,
			injected: document.getElementById("injected") !== null,
			elements: document.querySelectorAll("img, svg, b#injected").length,
			scripts: document.scripts.length,
			addr: document.querySelector('section.service tr[data-pool="default"] td[data-field="address"]').textContent,
			attr: document.querySelector('section.service tr[data-pool="default"]').getAttribute("data-backend"),
			svc: document.querySelector("section.service h2").firstChild.textContent,
			err: document.querySelector('section.service tr[data-pool="default"] td[data-field="last_check_error"]').textContent,
			texts: [document.getElementById("summary").textContent],
		})`
		if err := tab.Eval(expr, &got); err != nil {
			t.Fatal(err)
		}
		if got.Pwned != "undefined" || got.Injected || got.Elements != 0 || got.Scripts != 1 {
			t.Fatalf("markup from the status ran or became elements: %+v", got)
		}
		if got.Addr != addr || got.Attr != addr || got.Svc != svc || got.Err != checkErr || !strings.Contains(got.Texts[0], path) {
			t.Fatalf("the values are not shown as their text: %+v", got)
		}
	})
}

// backendReachable reports the reachable flag of backend addr in the
// default pool of service svc of a GET /status document.
func backendReachable(st map[string]any, svc, addr string) bool {
	for _, s := range st["services"].([]any) {
		sm := s.(map[string]any)
		if sm["name"] != svc {
			continue
		}
		for _, b := range sm["backends"].([]any) {
			bm := b.(map[string]any)
			if bm["address"] == addr {
				return bm["reachable"] == true
			}
		}
	}
	return false
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}
