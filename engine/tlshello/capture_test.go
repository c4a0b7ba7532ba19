package tlshello

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// update rewrites the captured hellos under testdata from the live clients.
var update = flag.Bool("update", false, "rewrite testdata/*.hex from live TLS clients")

// readHelloRecords reads one ClientHello's records from r using only the
// record framing and the handshake length, independently of Parse.
func readHelloRecords(r io.Reader) ([]byte, error) {
	var out []byte
	want := -1
	got := 0
	for want < 0 || got < want {
		var h [RecordHeaderLen]byte
		if _, err := io.ReadFull(r, h[:]); err != nil {
			return out, fmt.Errorf("record header: %w", err)
		}
		n := int(binary.BigEndian.Uint16(h[3:]))
		frag := make([]byte, n)
		if _, err := io.ReadFull(r, frag); err != nil {
			return out, fmt.Errorf("record body: %w", err)
		}
		out = append(append(out, h[:]...), frag...)
		if want < 0 {
			if n < HandshakeHeaderLen {
				return out, errors.New("first record shorter than a handshake header")
			}
			want = HandshakeHeaderLen + int(frag[1])<<16 | int(frag[2])<<8 | int(frag[3])
		}
		got += n
	}
	return out, nil
}

// captureListener accepts one connection on loopback, reads the client's
// hello records and closes the connection. It returns the port and a
// function that waits for the captured bytes.
func captureListener(t *testing.T) (port int, wait func() []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		b, err := readHelloRecords(c)
		ch <- result{b, err}
	}()
	return ln.Addr().(*net.TCPAddr).Port, func() []byte {
		select {
		case r := <-ch:
			if r.err != nil {
				t.Fatalf("capturing hello: %v (got %d bytes)", r.err, len(r.b))
			}
			return r.b
		case <-time.After(30 * time.Second):
			t.Fatal("no hello captured within 30s")
			return nil
		}
	}
}

// goHello captures the hello Go's crypto/tls client sends with cfg.
func goHello(t *testing.T, cfg *tls.Config) []byte {
	t.Helper()
	port, wait := captureListener(t)
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = tls.Client(c, cfg).Handshake() // fails once the listener closes
	}()
	b := wait()
	c.Close()
	<-done
	return b
}

// toolHello runs an external client against a capture listener; args may
// contain {port}. It skips the test when the tool is not installed.
func toolHello(t *testing.T, tool string, args ...string) []byte {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s not installed", tool)
	}
	port, wait := captureListener(t)
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, "{port}", strconv.Itoa(port))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdin = strings.NewReader("")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", tool, err)
	}
	b := wait()
	_ = cmd.Wait() // the tool fails its handshake; only its hello matters
	return b
}

// liveHello describes one client and the hello fields it must produce.
type liveHello struct {
	file    string // under testdata, hex
	sni     string
	alpn    []string
	capture func(t *testing.T) []byte
}

var liveHellos = []liveHello{
	{"go-tls13.hex", "api.example.com", []string{"h2", "http/1.1"}, func(t *testing.T) []byte {
		return goHello(t, &tls.Config{ServerName: "api.example.com", NextProtos: []string{"h2", "http/1.1"}})
	}},
	{"go-tls12.hex", "Legacy.Example.NET", []string{"http/1.1"}, func(t *testing.T) []byte {
		return goHello(t, &tls.Config{ServerName: "Legacy.Example.NET", NextProtos: []string{"http/1.1"},
			MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12})
	}},
	{"go-nosni.hex", "", nil, func(t *testing.T) []byte {
		return goHello(t, &tls.Config{InsecureSkipVerify: true})
	}},
	{"openssl.hex", "db.example.org", []string{"h2", "http/1.1"}, func(t *testing.T) []byte {
		return toolHello(t, "openssl", "s_client", "-connect", "127.0.0.1:{port}",
			"-servername", "db.example.org", "-alpn", "h2,http/1.1")
	}},
	{"openssl-tls12.hex", "old.example.org", nil, func(t *testing.T) []byte {
		return toolHello(t, "openssl", "s_client", "-connect", "127.0.0.1:{port}",
			"-servername", "old.example.org", "-tls1_2")
	}},
	{"curl.hex", "www.example.com", []string{"h2", "http/1.1"}, func(t *testing.T) []byte {
		return toolHello(t, "curl", "-sk", "--max-time", "20",
			"--resolve", "www.example.com:{port}:127.0.0.1", "https://www.example.com:{port}/")
	}},
}

// TestLiveClients captures a hello from each real client now and parses it;
// with -update it also rewrites the checked-in copies.
func TestLiveClients(t *testing.T) {
	for _, lh := range liveHellos {
		t.Run(lh.file, func(t *testing.T) {
			b := lh.capture(t)
			checkHello(t, b, lh.sni, lh.alpn)
			if *update {
				path := filepath.Join("testdata", lh.file)
				if err := os.WriteFile(path, []byte(hex.EncodeToString(b)+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// loadHello reads a checked-in hello.
func loadHello(t testing.TB, file string) []byte {
	t.Helper()
	s, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(s)))
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return b
}
