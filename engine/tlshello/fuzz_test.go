package tlshello

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// goServerHello feeds b to crypto/tls's server, an independent parser, and
// returns what it read from the hello, or ok false when it did not accept it.
func goServerHello(b []byte) (sni string, alpn []string, ok bool) {
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		_, _ = client.Write(b)
		client.Close()
	}()
	go func() { _, _ = io.Copy(io.Discard, client) }() // alerts
	errSeen := errors.New("seen")
	cfg := &tls.Config{GetConfigForClient: func(info *tls.ClientHelloInfo) (*tls.Config, error) {
		sni, alpn, ok = info.ServerName, info.SupportedProtos, true
		return nil, errSeen
	}}
	_ = tls.Server(server, cfg).Handshake()
	return sni, alpn, ok
}

// nameOK is the fuzz oracle's own statement of a valid server name.
func nameOK(s string) bool {
	if len(s) > MaxNameLen {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if len(label) == 0 || len(label) > 63 || strings.Trim(label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != "" {
			return false
		}
	}
	return true
}

// goAcceptsMore lists the reasons for which crypto/tls's server accepts a
// hello that Parse rejects on purpose: Go allows record versions other than
// 3.x, bytes after the hello in its record (it reads them as the next
// message), any bytes in a host name and session ids over 32 bytes.
var goAcceptsMore = []string{
	"record version is not 3.x",
	"bytes after the ClientHello in its last record",
	"host_name is not a valid DNS name",
	"legacy_session_id longer than 32 bytes",
}

func FuzzParse(f *testing.F) {
	for _, lh := range liveHellos {
		f.Add(loadHello(f, lh.file))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, st := Parse(b)
		if h.Len < 0 || h.Len > len(b) || (h.Len > 0) != (st == Done) {
			t.Fatalf("%v with Len %d of %d", st, h.Len, len(b))
		}
		if st == NeedMore && len(b) >= MaxHello {
			t.Fatalf("need_more with %d bytes", len(b))
		}
		if st == Done {
			if h.SNI != "" && !nameOK(h.SNI) {
				t.Fatalf("done with invalid SNI %q", h.SNI)
			}
			for _, p := range h.ALPN {
				if p == "" {
					t.Fatal("empty ALPN name")
				}
			}
			more := append(slices.Clip(b), 0x16, 3, 3, 0, 9, 1)
			if h2, st2 := Parse(more); st2 != Done || !sameHello(h, h2) {
				t.Fatalf("bytes after a done hello changed it: %v %+v vs %+v", st2, h2, h)
			}
		}
		// A prefix is undecided or decided the same way.
		for _, n := range []int{len(b) / 2, len(b) - 1} {
			if n < 0 {
				continue
			}
			hp, sp := Parse(b[:n])
			if sp != NeedMore && (sp != st || (st == Done && !sameHello(h, hp))) {
				t.Fatalf("prefix of %d bytes: %v %+v; whole: %v %+v", n, sp, hp, st, h)
			}
		}
		// crypto/tls's server accepting the hello means Parse does too, or
		// rejects it for one of the stricter rules.
		if st == NeedMore || st == NotTLS || st == TooLarge || len(b) > 4*MaxHello {
			return
		}
		gsni, galpn, ok := goServerHello(b)
		if !ok {
			return
		}
		if st != Done {
			if !slices.Contains(goAcceptsMore, h.Reason) {
				t.Fatalf("crypto/tls accepts (SNI %q ALPN %q), Parse says %v: %s", gsni, galpn, st, h.Reason)
			}
			return
		}
		if gsni != h.SNI || !slices.Equal(galpn, h.ALPN) && !(len(galpn) == 0 && len(h.ALPN) == 0) {
			t.Fatalf("crypto/tls reads SNI %q ALPN %q, Parse %q %q", gsni, galpn, h.SNI, h.ALPN)
		}
	})
}

func sameHello(a, b Hello) bool {
	return a.SNI == b.SNI && slices.Equal(a.ALPN, b.ALPN) && a.Len == b.Len && a.Reason == b.Reason
}

// TestWriteFuzzSeeds rewrites testdata/fuzz/FuzzParse from the real hellos
// and the edge cases of the tests (run with -update).
func TestWriteFuzzSeeds(t *testing.T) {
	if !*update {
		t.Skip("run with -update to rewrite the seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzParse")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	seeds := map[string][]byte{}
	for _, lh := range liveHellos {
		b := loadHello(t, lh.file)
		name := strings.TrimSuffix(lh.file, ".hex")
		seeds[name] = b
		msg := handshakeMessage(t, b)
		seeds[name+"-records-of-7"] = records(msg, 7)
		seeds[name+"-two-records"] = append(records(msg[:len(msg)/3], MaxRecordPayload), records(msg[len(msg)/3:], MaxRecordPayload)...)
	}
	seeds["one-byte-records"] = records(handshakeMessage(t, loadHello(t, "openssl-tls12.hex")), 1)
	seeds["sni-alpn"] = hello(sniExt("Example.COM."), alpnExt("h2", "http/1.1"))
	seeds["no-extensions"] = records(message(helloBody(0, 1, 1)), 100)
	seeds["duplicate-sni"] = hello(sniExt("a.com"), sniExt("a.com"))
	seeds["other-name-type"] = hello(ext(0, slices.Concat(u16(12), []byte{7, 0, 1, 'z'}, []byte{0, 0, 5}, []byte("ab.cd"))))
	seeds["too-large"] = []byte{22, 3, 1, 0, 100, 1, 0, 0x40, 0x01}
	seeds["not-tls"] = []byte("GET / HTTP/1.1\r\n")
	for name, b := range seeds {
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
