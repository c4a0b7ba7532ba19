package control

import (
	"bytes"
	"context"
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
