package enginetest

import (
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// ClientHello returns the first bytes a crypto/tls client configured with
// cfg sends: its ClientHello records. The client writes to a recorder that
// never answers, so the handshake stops right after the hello.
// InsecureSkipVerify is set on a copy of cfg (it does not change the hello)
// so that a hello without a server name can be made.
func ClientHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	cfg = cfg.Clone()
	cfg.InsecureSkipVerify = true
	rec := &recorder{}
	_ = tls.Client(rec, cfg).Handshake() // fails at the recorder's EOF
	if len(rec.b) < 5 || rec.b[0] != 22 {
		t.Fatalf("captured %d bytes, not a ClientHello record", len(rec.b))
	}
	return rec.b
}

// hello is a ClientHello for serverName ("" sends none) offering alpn.
func hello(t testing.TB, serverName string, alpn ...string) []byte {
	return ClientHello(t, &tls.Config{ServerName: serverName, NextProtos: alpn})
}

// smallHello is a shorter ClientHello (one X25519 key share only).
func smallHello(t testing.TB, serverName string) []byte {
	return ClientHello(t, &tls.Config{ServerName: serverName, CurvePreferences: []tls.CurveID{tls.X25519}})
}

// recorder is a net.Conn that keeps what is written and reads EOF.
type recorder struct{ b []byte }

func (r *recorder) Read([]byte) (int, error)         { return 0, io.EOF }
func (r *recorder) Write(p []byte) (int, error)      { r.b = append(r.b, p...); return len(p), nil }
func (r *recorder) Close() error                     { return nil }
func (r *recorder) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (r *recorder) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (r *recorder) SetDeadline(time.Time) error      { return nil }
func (r *recorder) SetReadDeadline(time.Time) error  { return nil }
func (r *recorder) SetWriteDeadline(time.Time) error { return nil }

// splitRecord re-frames a hello sent as one record into two records, the
// first carrying the first at bytes of the handshake message.
func splitRecord(t testing.TB, h []byte, at int) []byte {
	t.Helper()
	n := int(binary.BigEndian.Uint16(h[3:5]))
	if len(h) != 5+n || at <= 0 || at >= n {
		t.Fatalf("cannot split a %d-byte hello (record of %d) at %d", len(h), n, at)
	}
	msg := h[5:]
	out := make([]byte, 0, len(h)+5)
	out = append(out, h[0], h[1], h[2])
	out = binary.BigEndian.AppendUint16(out, uint16(at))
	out = append(out, msg[:at]...)
	out = append(out, h[0], h[1], h[2])
	out = binary.BigEndian.AppendUint16(out, uint16(n-at))
	return append(out, msg[at:]...)
}

// prefixSet is an engine.AddrSet of prefixes (trusted_proxies).
type prefixSet []netip.Prefix

func (s prefixSet) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

var loopback = prefixSet{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// noFDLeak fails t if the process holds more sockets once every cleanup
// registered after it has run (engine, clients, backends) than when it was
// called. Sockets closed by a garbage collection (a net.Conn nobody
// closed) count as leaked: no collection is forced. The runtime's pooled
// splice pipes are not counted (the collector frees them). A no-op where
// /proc/self/fd is missing.
func noFDLeak(t *testing.T) {
	t.Helper()
	before := openSockets()
	if before < 0 {
		return
	}
	t.Cleanup(func() {
		now := openSockets()
		for deadline := time.Now().Add(5 * time.Second); now > before && time.Now().Before(deadline); now = openSockets() {
			time.Sleep(20 * time.Millisecond)
		}
		if now > before {
			t.Errorf("%d sockets open after the test, %d before", now, before)
		}
	})
}

// openSockets counts this process's socket descriptors (-1 when unknown).
func openSockets() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}
