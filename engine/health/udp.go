package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// ErrUnexpectedReply: a probe got an answer without the bytes its check
// expects.
var ErrUnexpectedReply = errors.New("reply does not contain the expected bytes")

// MaxExpectRead is how much of a reply a send_expect check looks at.
const MaxExpectRead = 4096

// UDPSendExpect is the send_expect check of a UDP service
// (docs/udp.md#health): one datagram carrying Send to the backend's address
// (or to Port on its host, when set), success when the first reply contains
// Expect within its first MaxExpectRead bytes. A reply without it fails
// with ErrUnexpectedReply, ICMP port unreachable as a refused connect
// (ECONNREFUSED), silence until the timeout as a timeout.
type UDPSendExpect struct {
	Send, Expect []byte
	Port         int
}

// Probe implements Prober.
func (u UDPSendExpect) Probe(ctx context.Context, addr netip.AddrPort) error {
	if u.Port != 0 {
		addr = netip.AddrPortFrom(addr.Addr(), uint16(u.Port))
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "udp", addr.String())
	if err != nil {
		return err
	}
	defer nc.Close()
	c := nc.(*net.UDPConn)
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(time.Second))
	}
	// The deadline bounds the read; ctx may also end early (shutdown).
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	if _, err := c.Write(u.Send); err != nil {
		return err
	}
	buf := make([]byte, MaxExpectRead)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if !bytes.Contains(buf[:n], u.Expect) {
		return fmt.Errorf("udp %s: %w (got %d bytes)", addr, ErrUnexpectedReply, n)
	}
	return nil
}
