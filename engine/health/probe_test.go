package health

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/pool"
)

// scripted is a loopback TCP server running script on every connection;
// the test's end closes it and waits for the scripts.
type scripted struct {
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	got  []string // what each connection sent first (up to a blank line or 4 KiB)
	done chan struct{}
}

func serveScript(t *testing.T, script func(c net.Conn, s *scripted)) *scripted {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scripted{ln: ln, done: make(chan struct{})}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() {
				defer c.Close()
				script(c, s)
			})
		}
	})
	t.Cleanup(func() {
		close(s.done)
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *scripted) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// readRequest reads an HTTP request head (through the blank line) and
// records it.
func (s *scripted) readRequest(c net.Conn) string {
	br := bufio.NewReader(c)
	var b strings.Builder
	for {
		line, err := br.ReadString('\n')
		b.WriteString(line)
		if err != nil || line == "\r\n" {
			break
		}
	}
	s.mu.Lock()
	s.got = append(s.got, b.String())
	s.mu.Unlock()
	return b.String()
}

// readN reads exactly n bytes (what a probe sends) and records them.
func (s *scripted) readN(c net.Conn, n int) {
	buf := make([]byte, n)
	_, _ = io.ReadFull(c, buf)
	s.mu.Lock()
	s.got = append(s.got, string(buf))
	s.mu.Unlock()
}

func (s *scripted) first() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.got) == 0 {
		return ""
	}
	return s.got[0]
}

// holdUntilGone keeps the connection open, silent, until the probe closes
// it (or the test ends).
func holdUntilGone(c net.Conn, s *scripted) {
	go func() {
		<-s.done
		c.Close()
	}()
	_, _ = io.Copy(io.Discard, c)
}

func write(c net.Conn, parts ...string) {
	for _, p := range parts {
		if _, err := io.WriteString(c, p); err != nil {
			return
		}
	}
}

// deadPort is a loopback port nothing listens on.
func deadPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}

func httpReply(status int, headers, body string) string {
	return "HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n" + headers +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body
}

// probeCase is one check against one scripted backend. A case whose
// reason is "" must pass.
type probeCase struct {
	name    string
	check   config.HealthCheck
	script  func(c net.Conn, s *scripted) // nil: nothing listens (refused)
	timeout time.Duration                 // 0: 5 s (a passing check has plenty of time)
	reason  string
	detail  string // a substring of the error
	sent    string // what the backend must have received first ("" = not checked)
}

func runProbeCases(t *testing.T, cases []probeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			port := deadPort(t)
			var s *scripted
			if tc.script != nil {
				s = serveScript(t, tc.script)
				port = s.port()
			}
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			c := New(nil, Options{})
			b := pool.NewBackend(config.Backend{Host: "127.0.0.1", Port: port, Weight: 1})
			hc := tc.check
			err := c.CheckWith(t.Context(), b, &hc, timeout, false)
			if got := Reason(err); got != tc.reason {
				t.Fatalf("reason %q (error %v), want %q", got, err, tc.reason)
			}
			if tc.reason == ReasonCheckFailed && !errors.Is(err, ErrCheckFailed) {
				t.Fatalf("a check_failed error does not wrap ErrCheckFailed: %v", err)
			}
			if tc.detail != "" && (err == nil || !strings.Contains(err.Error(), tc.detail)) {
				t.Fatalf("error %v, want it to mention %q", err, tc.detail)
			}
			if err != nil && !strings.HasPrefix(err.Error(), tc.reason+": ") {
				t.Fatalf("error %q does not start with its reason", err)
			}
			if tc.sent != "" && s.first() != tc.sent {
				t.Fatalf("the backend received %q, want %q", s.first(), tc.sent)
			}
		})
	}
}

const short = 300 * time.Millisecond // the timeout of cases that must time out

func TestSendExpect(t *testing.T) {
	pingPong := config.HealthCheck{Type: config.CheckSendExpect, Send: []byte("PING\r\n"), Expect: []byte("+PONG")}
	big := strings.Repeat("x", MaxReply+100)
	runProbeCases(t, []probeCase{
		{name: "right reply", check: pingPong, sent: "PING\r\n",
			script: func(c net.Conn, s *scripted) { s.readN(c, 6); write(c, "+PONG\r\n") }},
		{name: "right reply split across writes", check: pingPong,
			script: func(c net.Conn, s *scripted) {
				s.readN(c, 6)
				write(c, "+PO")
				time.Sleep(20 * time.Millisecond)
				write(c, "NG\r\n")
			}},
		{name: "banner without send", check: config.HealthCheck{Type: config.CheckSendExpect, Expect: []byte("SSH-2.0-")},
			script: func(c net.Conn, s *scripted) { write(c, "SSH-2.0-OpenSSH_9.6\r\n") }},
		{name: "wrong reply then close", check: pingPong, reason: ReasonCheckFailed, detail: "ended without",
			script: func(c net.Conn, s *scripted) { s.readN(c, 6); write(c, "-ERR unknown\r\n") }},
		{name: "wrong reply kept open", check: pingPong, timeout: short, reason: ReasonCheckFailed, detail: "incomplete reply",
			script: func(c net.Conn, s *scripted) { s.readN(c, 6); write(c, "-LOADING\r\n"); holdUntilGone(c, s) }},
		{name: "silence", check: pingPong, timeout: short, reason: ReasonTimeout, detail: "no reply",
			script: holdUntilGone},
		{name: "slow reply after the timeout", check: pingPong, timeout: short, reason: ReasonTimeout,
			script: func(c net.Conn, s *scripted) { holdUntilGone(c, s); write(c, "+PONG\r\n") }},
		{name: "connection refused", check: pingPong, reason: ReasonRefused},
		{name: "reset after connecting", check: pingPong, reason: ReasonCheckFailed,
			script: func(c net.Conn, s *scripted) {
				s.readN(c, 6)
				_ = c.(*net.TCPConn).SetLinger(0)
			}},
		{name: "expect beyond the first 4 KiB", check: pingPong, reason: ReasonCheckFailed, detail: "first 4096 bytes",
			script: func(c net.Conn, s *scripted) { s.readN(c, 6); write(c, big, "+PONG\r\n"); holdUntilGone(c, s) }},
		{name: "expect within the first 4 KiB of a large reply", check: pingPong,
			script: func(c net.Conn, s *scripted) { s.readN(c, 6); write(c, big[:4000], "+PONG", big, big, big) }},
		{name: "binary send and expect", check: config.HealthCheck{Type: config.CheckSendExpect, Send: []byte{0, 1, 0xd2}, Expect: []byte{0xff, 0}},
			sent: "\x00\x01\xd2", script: func(c net.Conn, s *scripted) { s.readN(c, 3); write(c, "\x10\xff\x00") }},
	})
}

func TestHTTPCheck(t *testing.T) {
	get := config.HealthCheck{Type: config.CheckHTTP, HTTPPath: "/healthz", HTTPStatus: []config.StatusRange{{Low: 200, High: 399}}}
	with := func(f func(h *config.HealthCheck)) config.HealthCheck {
		h := get
		f(&h)
		return h
	}
	reply := func(status int, headers, body string) func(c net.Conn, s *scripted) {
		return func(c net.Conn, s *scripted) { s.readRequest(c); write(c, httpReply(status, headers, body)) }
	}
	big := strings.Repeat("y", MaxReply+10)
	runProbeCases(t, []probeCase{
		{name: "200", check: get, script: reply(200, "", "ok")},
		{name: "503", check: get, reason: ReasonCheckFailed, detail: "HTTP status 503 not in 200-399", script: reply(503, "", "down")},
		{name: "redirect is accepted by default, not followed", check: get, script: reply(301, "Location: /elsewhere\r\n", "")},
		{name: "redirect outside http_status", check: with(func(h *config.HealthCheck) { h.HTTPStatus = []config.StatusRange{{Low: 200, High: 200}} }),
			reason: ReasonCheckFailed, detail: "HTTP status 301 not in 200", script: reply(301, "Location: /elsewhere\r\n", "")},
		{name: "204 in a list of codes", check: with(func(h *config.HealthCheck) {
			h.HTTPStatus = []config.StatusRange{{Low: 200, High: 200}, {Low: 204, High: 204}}
		}),
			script: reply(204, "", "")},
		{name: "expect in the body", check: with(func(h *config.HealthCheck) { h.Expect = []byte(`"role":"primary"`) }),
			script: reply(200, "", `{"role":"primary"}`)},
		{name: "expect not in the body", check: with(func(h *config.HealthCheck) { h.Expect = []byte(`"role":"primary"`) }),
			reason: ReasonCheckFailed, detail: "does not contain", script: reply(200, "", `{"role":"replica"}`)},
		{name: "expect beyond the body's first 4 KiB", check: with(func(h *config.HealthCheck) { h.Expect = []byte("MARK") }),
			reason: ReasonCheckFailed, detail: "first 4096 bytes", script: reply(200, "", big+"MARK")},
		{name: "expect early in a large body", check: with(func(h *config.HealthCheck) { h.Expect = []byte("MARK") }),
			script: reply(200, "", "MARK"+big+big)},
		{name: "expect in a chunked body", check: with(func(h *config.HealthCheck) { h.Expect = []byte("alive") }),
			script: func(c net.Conn, s *scripted) {
				s.readRequest(c)
				write(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nali\r\n2\r\nve\r\n0\r\n\r\n")
			}},
		{name: "not HTTP", check: get, reason: ReasonCheckFailed, script: func(c net.Conn, s *scripted) { s.readRequest(c); write(c, "SSH-2.0-OpenSSH\r\n\r\n") }},
		{name: "closed before answering", check: get, reason: ReasonCheckFailed, detail: "closed before", script: func(c net.Conn, s *scripted) { s.readRequest(c) }},
		{name: "headers too large", check: get, reason: ReasonCheckFailed, script: func(c net.Conn, s *scripted) {
			s.readRequest(c)
			write(c, "HTTP/1.1 200 OK\r\nX-Pad: "+strings.Repeat("p", maxHTTPHeader+MaxReply)+"\r\n\r\n")
		}},
		{name: "silence", check: get, timeout: short, reason: ReasonTimeout, script: func(c net.Conn, s *scripted) { s.readRequest(c); holdUntilGone(c, s) }},
		{name: "slow reply after the timeout", check: get, timeout: short, reason: ReasonTimeout,
			script: func(c net.Conn, s *scripted) {
				s.readRequest(c)
				holdUntilGone(c, s)
				write(c, httpReply(200, "", "ok"))
			}},
		{name: "connection refused", check: get, reason: ReasonRefused},
	})
}

// TestHTTPRequest: the request line and headers an http check sends.
func TestHTTPRequest(t *testing.T) {
	tests := []struct {
		name  string
		check config.HealthCheck
		host  string // "" = the backend's 127.0.0.1:port
	}{
		{"default host", config.HealthCheck{Type: config.CheckHTTP, HTTPPath: "/healthz?full=1"}, ""},
		{"http_host", config.HealthCheck{Type: config.CheckHTTP, HTTPPath: "/", HTTPHost: "api.example.com"}, "api.example.com"},
		{"no path", config.HealthCheck{Type: config.CheckHTTP}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := serveScript(t, func(c net.Conn, s *scripted) { s.readRequest(c); write(c, httpReply(200, "", "")) })
			b := pool.NewBackend(config.Backend{Host: "127.0.0.1", Port: s.port(), Weight: 1})
			if err := New(nil, Options{}).CheckWith(t.Context(), b, &tt.check, 5*time.Second, false); err != nil {
				t.Fatal(err)
			}
			host := tt.host
			if host == "" {
				host = "127.0.0.1:" + strconv.Itoa(s.port())
			}
			path := tt.check.HTTPPath
			if path == "" {
				path = "/"
			}
			req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(s.first())))
			if err != nil {
				t.Fatalf("the check sent no valid request: %v\n%q", err, s.first())
			}
			if req.Method != http.MethodGet || req.RequestURI != path || req.Proto != "HTTP/1.1" || req.Host != host || !req.Close {
				t.Fatalf("request %s %s %s Host %q close=%v, want GET %s HTTP/1.1 Host %q Connection: close", req.Method, req.RequestURI, req.Proto, req.Host, req.Close, path, host)
			}
		})
	}
}

// TestCheckPortOverride: a check with port probes that port, not the
// backend's.
func TestCheckPortOverride(t *testing.T) {
	live := serveScript(t, func(c net.Conn, s *scripted) { write(c, "READY\n") })
	dead := deadPort(t)
	c := New(nil, Options{})
	tests := []struct {
		name        string
		backendPort int
		checkPort   int
		reason      string
	}{
		{"backend port dead, check port live", dead, live.port(), ""},
		{"backend port live, check port dead", live.port(), dead, ReasonRefused},
		{"no override", live.port(), 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := pool.NewBackend(config.Backend{Host: "127.0.0.1", Port: tt.backendPort, Weight: 1})
			hc := config.HealthCheck{Type: config.CheckSendExpect, Expect: []byte("READY"), Port: tt.checkPort}
			if got := Reason(c.CheckWith(t.Context(), b, &hc, 5*time.Second, false)); got != tt.reason {
				t.Fatalf("reason %q, want %q", got, tt.reason)
			}
			tcp := config.HealthCheck{Type: config.CheckTCP, Port: tt.checkPort}
			if got := Reason(c.CheckWith(t.Context(), b, &tcp, 5*time.Second, false)); got != tt.reason {
				t.Fatalf("tcp check: reason %q, want %q", got, tt.reason)
			}
		})
	}
}

// udpServer answers every datagram with reply(datagram); nil reply: silence.
func udpServer(t *testing.T, reply func([]byte) []byte) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64<<10)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if r := reply(buf[:n]); r != nil {
				_, _ = pc.WriteTo(r, from)
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().(*net.UDPAddr).Port
}

func TestSendExpectUDP(t *testing.T) {
	dns := config.HealthCheck{Type: config.CheckSendExpect, Send: []byte("ping"), Expect: []byte("pong")}
	deadUDP := func(t *testing.T) int {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := pc.LocalAddr().(*net.UDPAddr).Port
		pc.Close()
		return p
	}
	tests := []struct {
		name    string
		port    func(t *testing.T) int
		timeout time.Duration
		reason  string
	}{
		{"right reply", func(t *testing.T) int {
			return udpServer(t, func(b []byte) []byte {
				if string(b) == "ping" {
					return []byte("...pong...")
				}
				return []byte("what?")
			})
		}, 5 * time.Second, ""},
		{"wrong reply", func(t *testing.T) int { return udpServer(t, func([]byte) []byte { return []byte("nope") }) }, 5 * time.Second, ReasonCheckFailed},
		{"silence", func(t *testing.T) int { return udpServer(t, func([]byte) []byte { return nil }) }, short, ReasonTimeout},
		{"port unreachable", deadUDP, 5 * time.Second, ReasonRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := pool.NewBackend(config.Backend{Host: "127.0.0.1", Port: tt.port(t), Weight: 1})
			err := New(nil, Options{}).CheckWith(t.Context(), b, &dns, tt.timeout, true)
			if got := Reason(err); got != tt.reason {
				t.Fatalf("reason %q (%v), want %q", got, err, tt.reason)
			}
		})
	}
}

// TestRoundChecksAndMaintenance: a round probes each backend with its
// pool's check, records the latest failure (cleared by a success), calls
// OnDown when a check takes a backend down, and skips backends in
// maintenance while still feeding their mirrors that are in service.
func TestRoundChecksAndMaintenance(t *testing.T) {
	answer := "+PONG\r\n"
	var mu sync.Mutex
	s := serveScript(t, func(c net.Conn, s *scripted) {
		s.readN(c, 6)
		mu.Lock()
		a := answer
		mu.Unlock()
		write(c, a)
	})
	mk := func(p string) *pool.Backend {
		pl, _, _ := pool.New(p, []config.Backend{{Host: "127.0.0.1", Port: s.port(), Weight: 1}}, nil)
		return pl.At(0)
	}
	a, mirror := mk("a"), mk("b")
	var downs []string
	src := &source{r: Round{
		Backends: []*pool.Backend{a},
		Mirrors:  [][]*pool.Backend{{mirror}},
		Checks:   []config.HealthCheck{{Type: config.CheckSendExpect, Send: []byte("PING\r\n"), Expect: []byte("+PONG")}},
		Interval: time.Hour, Timeout: 5 * time.Second, Rise: 1, Fall: 1,
		OnDown: func(b *pool.Backend, err error) {
			mu.Lock()
			downs = append(downs, b.Pool()+" "+Reason(err))
			mu.Unlock()
		},
	}}
	c := New(src, Options{})
	c.RunRound(t.Context())
	if !a.Up() || a.CheckError() != "" || !mirror.Up() || a.LastCheck().IsZero() {
		t.Fatalf("after a good round: up %v/%v error %q", a.Up(), mirror.Up(), a.CheckError())
	}

	mu.Lock()
	answer = "-ERR\r\n"
	mu.Unlock()
	c.RunRound(t.Context())
	if a.Up() || mirror.Up() || !strings.HasPrefix(a.CheckError(), ReasonCheckFailed+": ") || a.CheckError() != mirror.CheckError() {
		t.Fatalf("after a wrong reply: up %v/%v errors %q / %q", a.Up(), mirror.Up(), a.CheckError(), mirror.CheckError())
	}
	mu.Lock()
	if strings.Join(downs, ",") != "a check_failed,b check_failed" {
		t.Fatalf("OnDown calls %v", downs)
	}
	answer = "+PONG\r\n"
	mu.Unlock()

	// a in maintenance: not fed; its mirror still is.
	a.SetAdmin(pool.Maint)
	last := a.LastCheck()
	c.RunRound(t.Context())
	if a.Up() || !a.LastCheck().Equal(last) || a.CheckError() == "" {
		t.Fatalf("a backend in maintenance was fed: up %v last %v error %q", a.Up(), a.LastCheck(), a.CheckError())
	}
	if !mirror.Up() || mirror.CheckError() != "" {
		t.Fatalf("the mirror in service was not fed: up %v error %q", mirror.Up(), mirror.CheckError())
	}
	// Both in maintenance: nothing is probed.
	mirror.SetAdmin(pool.Maint)
	s.mu.Lock()
	before := len(s.got)
	s.mu.Unlock()
	c.RunRound(t.Context())
	s.mu.Lock()
	after := len(s.got)
	s.mu.Unlock()
	if after != before {
		t.Fatalf("a round probed a server whose backends are all in maintenance")
	}
	a.SetAdmin(pool.Ready)
	c.RunRound(t.Context())
	if !a.Up() || a.CheckError() != "" {
		t.Fatalf("back in service: up %v error %q", a.Up(), a.CheckError())
	}
}
