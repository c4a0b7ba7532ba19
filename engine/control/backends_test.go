package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine/pool"
)

// post sends body to POST /backends/state over the socket and returns the
// status code and body.
func post(t testing.TB, f *fixture, body string) (int, string) {
	t.Helper()
	req := fmt.Sprintf("POST /backends/state HTTP/1.1\r\nHost: bal\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	out := string(rawRequest(t, f.ln.Path(), []byte(req)))
	resp, err := http.ReadResponse(bufioReader(out), nil)
	if err != nil {
		t.Fatalf("answer %q: %v", clip(out), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func list(t testing.TB, f *fixture) []BackendEntry {
	t.Helper()
	l, err := f.client.Backends(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return l.Backends
}

func TestBackendsRoutes(t *testing.T) {
	f := newFixture(t, Options{})
	addr := f.backend.Addr.String()
	want := []BackendEntry{{Service: "default", Pool: "default", Address: addr, AdminState: "ready", Reachable: true}}
	if got := list(t, f); !reflect.DeepEqual(got, want) {
		t.Fatalf("GET /backends %+v, want %+v", got, want)
	}

	code, body := post(t, f, `{"backend":"`+addr+`","state":"drain"}`)
	var ans BackendList
	if err := json.Unmarshal([]byte(body), &ans); err != nil || code != 200 {
		t.Fatalf("drain: %d %s", code, body)
	}
	if len(ans.Backends) != 1 || ans.Backends[0].AdminState != "drain" ||
		!reflect.DeepEqual(ans.Changed, []StateChange{{Service: "default", Pool: "default", Address: addr, Previous: "ready", State: "drain"}}) {
		t.Fatalf("drain answer %+v", ans)
	}
	drained := list(t, f)
	if drained[0].AdminState != "drain" {
		t.Fatalf("after drain: %+v", drained)
	}

	bad := []struct {
		name string
		body string
		code int
		msg  string
	}{
		{"garbage", "\x00\xffnot json", 400, "bad JSON"},
		{"empty", "", 400, "bad JSON"},
		{"truncated", `{"backend":"` + addr, 400, "bad JSON"},
		{"array", `[]`, 400, "bad JSON"},
		{"unknown field", `{"backend":"` + addr + `","state":"maint","force":true}`, 400, "unknown field"},
		{"trailing data", `{"backend":"` + addr + `","state":"maint"} {}`, 400, "data after"},
		{"state as a number", `{"backend":"` + addr + `","state":2}`, 400, "bad JSON"},
		{"close_after_ms as a string", `{"backend":"` + addr + `","state":"maint","close_after_ms":"5s"}`, 400, "bad JSON"},
		{"fractional close_after_ms", `{"backend":"` + addr + `","state":"maint","close_after_ms":1.5}`, 400, "bad JSON"},
		{"no backend", `{"state":"maint"}`, 400, `"backend" is required`},
		{"no state", `{"backend":"` + addr + `"}`, 400, `"state" is required`},
		{"bad state", `{"backend":"` + addr + `","state":"off"}`, 400, "unknown state"},
		{"negative close_after_ms", `{"backend":"` + addr + `","state":"maint","close_after_ms":-1}`, 400, "close_after_ms"},
		{"close-after with ready", `{"backend":"` + addr + `","state":"ready","close_after_ms":1000}`, 400, "drain and maint"},
		{"backend not host:port", `{"backend":"localhost","state":"maint"}`, 400, "no port"},
		{"unknown backend", `{"backend":"127.0.0.1:1","state":"maint"}`, 404, "not configured"},
		{"unknown service", `{"backend":"` + addr + `","service":"web","state":"maint"}`, 404, `no service "web"`},
		{"unknown route", `{"backend":"` + addr + `","route":"api","state":"maint"}`, 404, `no route "api"`},
		{"huge body", `{"backend":"` + addr + `","state":"maint"}` + strings.Repeat(" ", MaxStateBody), 413, "over"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			code, body := post(t, f, tt.body)
			var ea ErrorAnswer
			if code != tt.code || json.Unmarshal([]byte(body), &ea) != nil || !strings.Contains(ea.Error, tt.msg) {
				t.Fatalf("answer %d %s, want %d with an error mentioning %q", code, clip(body), tt.code, tt.msg)
			}
			if got := list(t, f); !reflect.DeepEqual(got, drained) {
				t.Fatalf("a rejected request changed the backends: %+v", got)
			}
		})
	}
	for _, tt := range []struct{ name, req, allow string }{
		{"get state", "GET /backends/state HTTP/1.1\r\nHost: bal\r\n\r\n", "POST"},
		{"post backends", "POST /backends HTTP/1.1\r\nHost: bal\r\nContent-Length: 0\r\n\r\n", "GET, HEAD"},
	} {
		out := string(rawRequest(t, f.ln.Path(), []byte(tt.req)))
		if !strings.Contains(firstLine(out), " 405 ") || !strings.Contains(out, "Allow: "+tt.allow+"\r\n") {
			t.Errorf("%s: %q", tt.name, clip(out))
		}
	}

	// The client maps the answers to errors.
	ctx := context.Background()
	if _, err := f.client.SetBackendState(ctx, StateRequest{Backend: "127.0.0.1:1", State: "drain"}); !errors.Is(err, ErrUnknownBackend) || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("client, unknown backend: %v", err)
	}
	if _, err := f.client.SetBackendState(ctx, StateRequest{Backend: addr, State: "sleep"}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("client, bad state: %v", err)
	}
	l, err := f.client.SetBackendState(ctx, StateRequest{Backend: addr, State: "ready"})
	if err != nil || l.Backends[0].AdminState != "ready" || l.Changed[0].Previous != "drain" {
		t.Fatalf("client, ready: %+v %v", l, err)
	}
	if st, _ := f.client.Status(ctx); st.Backends[0].AdminState != "ready" || st.Services[0].Backends[0].AdminState != "ready" {
		t.Fatalf("status admin_state: %+v", st.Backends[0])
	}
}

func TestParseStateRequest(t *testing.T) {
	tests := []struct {
		body  string
		state pool.AdminState
		after time.Duration
		bad   bool
	}{
		{body: `{"backend":"10.0.0.1:80","state":"drain"}`, state: pool.Drain},
		{body: `{"backend":"10.0.0.1:80","state":"MAINT","close_after_ms":1500}`, state: pool.Maint, after: 1500 * time.Millisecond},
		{body: `{"backend":"10.0.0.1:80","service":"web","route":"api","state":"ready","close_after_ms":0}`, state: pool.Ready},
		{body: `{"backend":"10.0.0.1:80","state":"drain","close_after_ms":99999999999999}`, bad: true},
		{body: `{"backend":"10.0.0.1:80","state":"drain","close_after_ms":1e3}`, bad: true},
		{body: `{"backend":null,"state":"drain"}`, bad: true},
		{body: `null`, bad: true},
	}
	for _, tt := range tests {
		req, err := ParseStateRequest([]byte(tt.body))
		if tt.bad != (err != nil) || (err == nil && (req.State != tt.state || req.CloseAfter != tt.after)) {
			t.Errorf("ParseStateRequest(%s) = %+v, %v", tt.body, req, err)
		}
	}
}

// TestStatusPageServed: GET / on the socket and on the web handler is the
// page, with a policy that lets only its own script run; the web handler
// serves nothing that changes state.
func TestStatusPageServed(t *testing.T) {
	f := newFixture(t, Options{Version: "v-page"})
	out := string(rawRequest(t, f.ln.Path(), []byte("GET / HTTP/1.1\r\nHost: bal\r\nConnection: close\r\n\r\n")))
	if !strings.Contains(firstLine(out), " 200 ") || !strings.Contains(out, "Content-Type: text/html; charset=utf-8\r\n") ||
		!strings.Contains(out, "Content-Security-Policy: default-src 'none'; script-src 'sha256-") || !strings.Contains(out, "<title>bal status</title>") {
		t.Fatalf("GET / on the socket: %q", clip(out))
	}
	web := httptest.NewServer(f.ctl.WebHandler())
	defer web.Close()
	for _, tt := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/", 200, "fetch(\"status\""},
		{"HEAD", "/", 200, ""},
		{"GET", "/status", 200, `"version": "v-page"`},
		{"POST", "/reload", 404, ""},
		{"POST", "/backends/state", 404, ""},
		{"GET", "/backends", 404, ""},
		{"POST", "/", 405, ""},
	} {
		req, _ := http.NewRequest(tt.method, web.URL+tt.path, strings.NewReader(`{"backend":"x:1","state":"drain"}`))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code || !strings.Contains(string(b), tt.body) {
			t.Errorf("%s %s: %d %q", tt.method, tt.path, resp.StatusCode, clip(string(b)))
		}
	}
}

// TestStatusPageInsertsTextOnly: the page's script never parses data as
// HTML (the browser test shows it renders markup as text).
func TestStatusPageInsertsTextOnly(t *testing.T) {
	page := string(statusPage)
	for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "<link", "<img", "src=", "@import", "url("} {
		if strings.Contains(page, sink) {
			t.Errorf("the status page uses %q", sink)
		}
	}
	if !strings.Contains(page, `fetch("status"`) || !strings.Contains(page, "setTimeout(refresh, 2000)") {
		t.Error("the page does not refresh from the relative status URL every 2 s")
	}
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }
