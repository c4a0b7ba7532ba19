package health

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
)

// Reasons a health check fails, the first word of a backend's
// last_check_error (docs/configuration.md#health-checks).
const (
	// ReasonCheckFailed: the probe connected, but the reply was wrong (it
	// lacked expect, had a status outside http_status, was not HTTP, or
	// the backend closed or reset before answering).
	ReasonCheckFailed = "check_failed"
	// ReasonTimeout: nothing came back within health_check_timeout_ms (the
	// connect, or the reply).
	ReasonTimeout = "timeout"
	// ReasonRefused: the connect was refused (or, for a UDP probe, an ICMP
	// port unreachable came back).
	ReasonRefused = "refused"
	// ReasonDNS: the backend's host name did not resolve.
	ReasonDNS = "dns"
	// ReasonOther: any other connect failure (unreachable network, ...).
	ReasonOther = "other"
)

// MaxReply is the most a probe reads of a reply (send_expect) or of an HTTP
// body (http with expect): expect must appear within it.
const MaxReply = config.MaxCheckExpect

// maxHTTPHeader bounds the status line and headers an http probe reads;
// the probe reads at most that plus MaxReply bytes of a response.
const maxHTTPHeader = 16 << 10

// ErrCheckFailed is wrapped by every failure of reason ReasonCheckFailed.
var ErrCheckFailed = errors.New("check failed")

// CheckError is a failed health check: its reason and what happened.
// Error is "reason: detail", the backend's last_check_error.
type CheckError struct {
	Reason string // a Reason constant
	Err    error
}

func (e *CheckError) Error() string { return e.Reason + ": " + e.Err.Error() }

func (e *CheckError) Unwrap() error { return e.Err }

// Reason returns the reason of a failed check (ReasonOther when err is not
// a *CheckError), "" for nil.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	var ce *CheckError
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return ReasonOther
}

// failed is a check_failed CheckError.
func failed(format string, args ...any) error {
	return &CheckError{Reason: ReasonCheckFailed, Err: fmt.Errorf("%w: "+format, append([]any{ErrCheckFailed}, args...)...)}
}

// connectError classifies a failed connect.
func connectError(err error) error {
	reason := ReasonOther
	switch engine.Classify(err) {
	case engine.FailTimeout:
		reason = ReasonTimeout
	case engine.FailRefused:
		reason = ReasonRefused
	}
	return &CheckError{Reason: reason, Err: err}
}

// probeAddr is where a check of hc connects for the backend address a.
func probeAddr(a netip.AddrPort, hc *config.HealthCheck) netip.AddrPort {
	if hc != nil && hc.Port != 0 {
		return netip.AddrPortFrom(a.Addr(), uint16(hc.Port))
	}
	return a
}

// converse runs the check's conversation on a connected conn, within the
// deadline of ctx: nothing for tcp, send then expect for send_expect, a GET
// for http. host is the backend's host, for the Host header.
func converse(ctx context.Context, conn net.Conn, hc *config.HealthCheck, host string, port uint16, udp bool) error {
	if hc == nil || hc.Type == "" || hc.Type == config.CheckTCP {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// Closing the connection when ctx ends (shutdown) unblocks the probe.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	switch hc.Type {
	case config.CheckSendExpect:
		if udp {
			return datagramExpect(conn, hc.Send, hc.Expect)
		}
		return sendExpect(conn, hc.Send, hc.Expect)
	case config.CheckHTTP:
		return httpCheck(conn, hc, host, port)
	}
	return failed("unknown check type %q", hc.Type)
}

// sendExpect writes send, then reads at most MaxReply bytes until expect
// appears.
func sendExpect(conn net.Conn, send, expect []byte) error {
	if len(send) > 0 {
		if _, err := conn.Write(send); err != nil {
			return replyError(err, 0, "sending")
		}
	}
	found, n, err := readUntil(conn, expect, MaxReply)
	switch {
	case found:
		return nil
	case err == nil || errors.Is(err, io.EOF):
		if n >= MaxReply {
			return failed("the first %d bytes of the reply do not contain %s", n, quote(expect))
		}
		return failed("the reply (%d bytes) ended without %s", n, quote(expect))
	}
	return replyError(err, n, "reading the reply")
}

// datagramExpect sends send as one datagram and waits for one reply
// datagram that contains expect (within its first MaxReply bytes).
func datagramExpect(conn net.Conn, send, expect []byte) error {
	if _, err := conn.Write(send); err != nil {
		return replyError(err, 0, "sending")
	}
	buf := make([]byte, 64<<10)
	n, err := conn.Read(buf)
	if err != nil {
		return replyError(err, 0, "waiting for the reply")
	}
	if bytes.Contains(buf[:min(n, MaxReply)], expect) {
		return nil
	}
	return failed("the reply datagram (%d bytes) does not contain %s", n, quote(expect))
}

// httpCheck sends "GET path HTTP/1.1" and judges the status line and, with
// expect, the body's first MaxReply bytes.
func httpCheck(conn net.Conn, hc *config.HealthCheck, host string, port uint16) error {
	h := hc.HTTPHost
	if h == "" {
		h = host
		if strings.Contains(h, ":") {
			h = "[" + h + "]"
		}
		if port != 80 {
			h += ":" + strconv.Itoa(int(port))
		}
	}
	path := hc.HTTPPath
	if path == "" {
		path = config.DefaultHTTPPath
	}
	req := "GET " + path + " HTTP/1.1\r\nHost: " + h + "\r\nConnection: close\r\nUser-Agent: bal-health-check\r\nAccept: */*\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return replyError(err, 0, "sending the request")
	}
	cr := &countingReader{r: conn}
	br := bufio.NewReaderSize(io.LimitReader(cr, maxHTTPHeader+MaxReply), 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			if cr.n >= maxHTTPHeader+MaxReply {
				return failed("the HTTP status line and headers are over %d bytes", maxHTTPHeader)
			}
			return failed("the connection closed before a complete HTTP response (%d bytes)", cr.n)
		}
		var ne net.Error
		if errors.As(err, &ne) || errors.Is(err, os.ErrDeadlineExceeded) {
			return replyError(err, int(cr.n), "reading the HTTP response")
		}
		return failed("not an HTTP response: %v", err)
	}
	defer resp.Body.Close()
	if !statusOK(resp.StatusCode, hc.HTTPStatus) {
		return failed("HTTP status %d not in %s", resp.StatusCode, ranges(hc.HTTPStatus))
	}
	if len(hc.Expect) == 0 {
		return nil
	}
	found, n, rerr := readUntil(resp.Body, hc.Expect, MaxReply)
	switch {
	case found:
		return nil
	case rerr == nil || errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF):
		if n >= MaxReply {
			return failed("HTTP status %d, but the first %d bytes of the body do not contain %s", resp.StatusCode, n, quote(hc.Expect))
		}
		return failed("HTTP status %d, but the body (%d bytes) does not contain %s", resp.StatusCode, n, quote(hc.Expect))
	}
	return failed("HTTP status %d, but the body did not contain %s in time: %v", resp.StatusCode, quote(hc.Expect), rerr)
}

// readUntil reads r until expect appears in what was read, at most limit
// bytes. n is how many bytes were read.
func readUntil(r io.Reader, expect []byte, limit int) (found bool, n int, err error) {
	buf := make([]byte, limit)
	for n < limit {
		var k int
		k, err = r.Read(buf[n:])
		from := max(n-len(expect)+1, 0)
		n += k
		if k > 0 && bytes.Contains(buf[from:n], expect) {
			return true, n, nil
		}
		if err != nil {
			return false, n, err
		}
	}
	return false, n, nil
}

// replyError classifies a failure after connecting: silence until the
// deadline (nothing read) is a timeout; anything else — a partial reply at
// the deadline, a reset, a close — fails the check.
func replyError(err error, read int, doing string) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if read == 0 {
			return &CheckError{Reason: ReasonTimeout, Err: fmt.Errorf("no reply within the timeout: %w", err)}
		}
		return failed("incomplete reply (%d bytes) within the timeout", read)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return &CheckError{Reason: ReasonRefused, Err: fmt.Errorf("%s: %w", doing, err)}
	}
	return failed("%s: %v", doing, err)
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func statusOK(code int, rs []config.StatusRange) bool {
	if len(rs) == 0 {
		return code >= 200 && code <= 399
	}
	for _, r := range rs {
		if code >= r.Low && code <= r.High {
			return true
		}
	}
	return false
}

func ranges(rs []config.StatusRange) string {
	if len(rs) == 0 {
		return "200-399"
	}
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.String()
	}
	return strings.Join(s, ",")
}

// quote shows expected bytes in an error: Go-quoted, clipped.
func quote(b []byte) string {
	if len(b) > 64 {
		return strconv.Quote(string(b[:64])) + "…"
	}
	return strconv.Quote(string(b))
}
