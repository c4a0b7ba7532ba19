package control

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// FuzzControlRequest writes raw bytes to a real control socket of a running
// bal. Whatever arrives, the server must not panic or answer 500, every
// answer must be HTTP, and a legitimate status must work afterwards.
func FuzzControlRequest(f *testing.F) {
	for _, s := range []string{
		"GET /status HTTP/1.1\r\nHost: bal\r\n\r\n",
		"POST /reload HTTP/1.1\r\nHost: bal\r\nContent-Length: 3\r\n\r\nabc",
		"GET /metrics HTTP/1.0\r\n\r\n",
		"GET /status HTTP/1.1\r\nHost: bal\r\n\r\nGET /status HTTP/1.1\r\nHost: bal\r\n\r\n",
		"POST /reload HTTP/1.1\r\nHost: bal\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"PUT /status HTTP/1.1\r\nHost: bal\r\n\r\n",
		"\x00\xff\r\n\r\n",
		"",
	} {
		f.Add([]byte(s))
	}
	fx := newFixture(f, Options{})
	f.Fuzz(func(t *testing.T, req []byte) {
		out := rawRequest(t, fx.ln.Path(), req)
		if len(out) > 0 && !bytes.HasPrefix(out, []byte("HTTP/1.")) {
			t.Fatalf("answer is not HTTP: %q", clip(string(out)))
		}
		for _, line := range bytes.Split(out, []byte("\r\n")) {
			if !bytes.HasPrefix(line, []byte("HTTP/1.")) {
				continue
			}
			fields := strings.Fields(string(line))
			if len(fields) < 2 {
				continue
			}
			if code, err := strconv.Atoi(fields[1]); err == nil && code == 500 { // what a handler panic gives; net/http itself answers 505 to HTTP/0.x
				t.Fatalf("status %d for %q", code, clip(string(req)))
			}
		}
		if strings.Contains(fx.logs.String(), "panic") {
			t.Fatalf("the server logged a panic for %q", clip(string(req)))
		}
		if _, err := fx.client.Status(context.Background()); err != nil {
			t.Fatalf("status after %q: %v", clip(string(req)), err)
		}
	})
}

// FuzzStateRequest sends arbitrary bodies to POST /backends/state of a real
// running bal. Every answer is 200, 400, 404 or 413 with a JSON body; only
// a 200 changes a backend's state, and only for a body ParseStateRequest
// accepts.
func FuzzStateRequest(f *testing.F) {
	fx := newFixture(f, Options{})
	addr := fx.backend.Addr.String()
	for _, s := range []string{
		`{"backend":"` + addr + `","state":"drain"}`,
		`{"backend":"` + addr + `","state":"maint","close_after_ms":60000}`,
		`{"backend":"` + addr + `","service":"default","route":"default","state":"ready"}`,
		`{"backend":"127.0.0.1:1","state":"drain"}`,
		`{"backend":"` + addr + `","state":"drain","extra":1}`,
		`{"backend":"` + addr + `","state":"ready","close_after_ms":5}`,
		`{"backend":"::1:80","state":"maint"}`,
		`{"backend":"` + addr + `","state":"drain"}{}`,
		`{"backend":1}`,
		"\x00",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := fx.ctl.backendList()
		rec := httptest.NewRecorder()
		fx.ctl.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/backends/state", bytes.NewReader(body)))
		code := rec.Code
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("answer %d is not JSON: %q", code, clip(rec.Body.String()))
		}
		after := fx.ctl.backendList()
		_, perr := ParseStateRequest(body)
		switch code {
		case http.StatusOK:
			if perr != nil {
				t.Fatalf("200 for a body ParseStateRequest rejects (%v): %q", perr, clip(string(body)))
			}
			var ans BackendList
			if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil || len(ans.Changed) == 0 {
				t.Fatalf("200 without changes: %q", clip(rec.Body.String()))
			}
		case http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge:
			if !reflect.DeepEqual(before, after) {
				t.Fatalf("answer %d changed the backends: %+v -> %+v", code, before, after)
			}
		default:
			t.Fatalf("answer %d for %q", code, clip(string(body)))
		}
	})
}
