package baltest

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// Backend is a test backend on a fixed loopback port that can be killed
// (listener and connections closed: connects are refused) and restarted on
// the same port. It counts the connections it accepted.
type Backend struct {
	t      testing.TB
	port   int
	handle func(*net.TCPConn)

	mu       sync.Mutex
	ln       *net.TCPListener
	conns    map[*net.TCPConn]struct{}
	accepted int
	wg       sync.WaitGroup
}

// NewBackend starts a backend running handle for each connection; the
// cleanup kills it.
func NewBackend(t testing.TB, handle func(*net.TCPConn)) *Backend {
	t.Helper()
	b := &Backend{t: t, port: FreePort(t), handle: handle, conns: map[*net.TCPConn]struct{}{}}
	b.Start()
	t.Cleanup(b.Kill)
	return b
}

// Addr is "127.0.0.1:port".
func (b *Backend) Addr() string { return fmt.Sprintf("127.0.0.1:%d", b.port) }

// Accepted is the number of connections accepted so far.
func (b *Backend) Accepted() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.accepted
}

// Start (re)starts listening on the backend's port.
func (b *Backend) Start() {
	b.t.Helper()
	var ln net.Listener
	var err error
	for range 100 { // the port may linger briefly after a kill
		if ln, err = net.Listen("tcp", b.Addr()); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		b.t.Fatalf("backend listen on %s: %v", b.Addr(), err)
	}
	tl := ln.(*net.TCPListener)
	b.mu.Lock()
	b.ln = tl
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := tl.AcceptTCP()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns[c] = struct{}{}
			b.accepted++
			b.mu.Unlock()
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				b.handle(c)
				c.Close()
				b.mu.Lock()
				delete(b.conns, c)
				b.mu.Unlock()
			}()
		}
	}()
}

// Kill closes the listener and every connection and waits for the handlers.
func (b *Backend) Kill() {
	b.mu.Lock()
	if b.ln != nil {
		b.ln.Close()
		b.ln = nil
	}
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// Name is a handler that writes name and closes.
func Name(name string) func(*net.TCPConn) {
	return func(c *net.TCPConn) { _, _ = io.WriteString(c, name) }
}

// Echo is a handler that echoes until EOF.
func Echo(c *net.TCPConn) { _, _ = io.Copy(c, c) }

// Who connects to addr and returns what the backend wrote before closing.
func Who(addr string) (string, error) { return WhoFrom(netip.Addr{}, addr) }

// WhoFrom is Who from the source address src (the zero Addr: any), e.g. one
// of many loopback addresses for source_hash.
func WhoFrom(src netip.Addr, addr string) (string, error) {
	d := net.Dialer{Timeout: 2 * time.Second}
	if src.IsValid() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	if err == nil && len(b) == 0 {
		err = io.ErrUnexpectedEOF
	}
	return string(b), err
}

// RoundTrip opens a connection to addr, writes msg, reads the echo, closes.
func RoundTrip(addr, msg string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo mismatch: %q", buf)
	}
	return nil
}
