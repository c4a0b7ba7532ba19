//go:build linux

package baltest

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// DNSMode is how a DNS responder answers.
type DNSMode int32

// Modes.
const (
	DNSAnswer   DNSMode = iota // the configured records (NXDOMAIN for other names)
	DNSServFail                // SERVFAIL to everything
	DNSDrop                    // no answer at all (the client times out)
)

// DNS is a minimal authoritative DNS responder over UDP for tests: A and
// AAAA records with a TTL, switchable at run time, plus failure modes. It
// answers nothing else (other types get an empty answer).
type DNS struct {
	conn    net.PacketConn
	mode    atomic.Int32
	queries atomic.Uint64
	ttl     uint32

	mu      sync.Mutex
	records map[string][]netip.Addr // lower-case name without the final dot
	wg      sync.WaitGroup
}

// NewDNS listens on UDP addr (e.g. "127.0.0.1:53") — inside namespace ns
// when not "" — and answers with ttl seconds; the cleanup stops it.
func NewDNS(t testing.TB, ns, addr string, ttl uint32) *DNS {
	t.Helper()
	d := &DNS{records: map[string][]netip.Addr{}, ttl: ttl}
	listen := func() {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Fatalf("dns listen %s: %v", addr, err)
		}
		d.conn = c
	}
	if ns != "" {
		InNS(t, ns, listen)
	} else {
		listen()
	}
	d.wg.Add(1)
	go d.serve()
	t.Cleanup(func() {
		d.conn.Close()
		d.wg.Wait()
	})
	return d
}

// Set replaces the records of name.
func (d *DNS) Set(name string, addrs ...netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.records[strings.ToLower(strings.TrimSuffix(name, "."))] = addrs
}

// SetMode switches how queries are answered.
func (d *DNS) SetMode(m DNSMode) { d.mode.Store(int32(m)) }

// Queries counts the queries received.
func (d *DNS) Queries() uint64 { return d.queries.Load() }

func (d *DNS) serve() {
	defer d.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		d.queries.Add(1)
		if DNSMode(d.mode.Load()) == DNSDrop {
			continue
		}
		if resp, err := d.answer(buf[:n]); err == nil {
			_, _ = d.conn.WriteTo(resp, from)
		}
	}
}

const (
	typeA    = 1
	typeAAAA = 28
)

var errBadQuery = errors.New("bad dns query")

// answer builds the response to one query.
func (d *DNS) answer(q []byte) ([]byte, error) {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil, errBadQuery
	}
	// Question: labels, then type and class.
	i := 12
	var labels []string
	for {
		if i >= len(q) {
			return nil, errBadQuery
		}
		l := int(q[i])
		i++
		if l == 0 {
			break
		}
		if l > 63 || i+l > len(q) {
			return nil, errBadQuery
		}
		labels = append(labels, string(q[i:i+l]))
		i += l
	}
	if i+4 > len(q) {
		return nil, errBadQuery
	}
	qtype := binary.BigEndian.Uint16(q[i : i+2])
	question := q[12 : i+4]
	name := strings.ToLower(strings.Join(labels, "."))

	rcode := uint16(0)
	var answers []netip.Addr
	if DNSMode(d.mode.Load()) == DNSServFail {
		rcode = 2
	} else {
		d.mu.Lock()
		addrs, ok := d.records[name]
		d.mu.Unlock()
		if !ok {
			rcode = 3 // NXDOMAIN
		}
		for _, a := range addrs {
			if (qtype == typeA && a.Is4()) || (qtype == typeAAAA && a.Is6()) {
				answers = append(answers, a)
			}
		}
	}
	out := make([]byte, 12, 12+len(question)+len(answers)*28)
	copy(out[0:2], q[0:2])                                     // ID
	flags := uint16(0x8000 | 0x0400 | 0x0080)                  // QR, AA, RA
	flags |= binary.BigEndian.Uint16(q[2:4]) & 0x0100          // RD copied
	binary.BigEndian.PutUint16(out[2:4], flags|rcode)          //
	binary.BigEndian.PutUint16(out[4:6], 1)                    // QDCOUNT
	binary.BigEndian.PutUint16(out[6:8], uint16(len(answers))) // ANCOUNT
	out = append(out, question...)
	for _, a := range answers {
		out = append(out, 0xc0, 12) // pointer to the question's name
		out = binary.BigEndian.AppendUint16(out, qtype)
		out = binary.BigEndian.AppendUint16(out, 1) // IN
		out = binary.BigEndian.AppendUint32(out, d.ttl)
		raw := a.AsSlice()
		out = binary.BigEndian.AppendUint16(out, uint16(len(raw)))
		out = append(out, raw...)
	}
	return out, nil
}

// NSEtc installs files (name → content, e.g. "resolv.conf") under
// /etc/netns/<ns>/, where `ip netns exec` — and so a bal started with
// InNetNS(ns) — bind-mounts each over /etc/<name> in a private mount
// namespace (iproute2's convention). The cleanup removes them.
func NSEtc(t testing.TB, ns string, files map[string]string) {
	t.Helper()
	dir := filepath.Join("/etc/netns", ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("NSEtc: %v", err)
	}
	t.Cleanup(func() {
		os.RemoveAll(dir)
		_ = os.Remove("/etc/netns") // only when empty: others may use it
	})
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatalf("NSEtc: %v", err)
		}
	}
}
