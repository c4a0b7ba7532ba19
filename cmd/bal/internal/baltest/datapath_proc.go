//go:build linux

package baltest

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TCP socket states as /proc/net/tcp numbers them.
var tcpStates = map[string]string{
	"01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1",
	"05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
	"09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING", "0C": "NEW_SYN_RECV",
}

// Socket is one TCP socket of a network namespace.
type Socket struct {
	Local, Remote netip.AddrPort
	State         string // ESTABLISHED, CLOSE_WAIT, ...
	Inode         uint64 // 0 for TIME_WAIT and orphaned sockets
	Owned         bool   // one of the process's descriptors is this socket
}

// Sockets lists every TCP socket (IPv4 and IPv6) of pid's network
// namespace, marking those pid holds a descriptor of. Orphans (closed by
// their process, still in FIN_WAIT/TIME_WAIT...) are listed unowned.
func Sockets(t testing.TB, pid int) []Socket {
	t.Helper()
	return SocketsWhere(t, pid, nil)
}

// SocketsWhere is Sockets keeping only the sockets for which keep (given
// the local and remote ports, the inode and whether pid owns it) is true;
// nil keeps all. The namespace may hold tens of thousands of TIME_WAIT
// sockets of other processes, so lines are filtered before any decoding.
func SocketsWhere(t testing.TB, pid int, keep func(localPort, remotePort uint16, inode uint64, owned bool) bool) []Socket {
	t.Helper()
	owned := socketInodes(pid)
	var out []Socket
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			if f == "tcp6" && os.IsNotExist(err) {
				continue
			}
			t.Fatalf("sockets of %d: %v", pid, err)
		}
		first := true
		for len(b) > 0 {
			line := b
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				line, b = b[:i], b[i+1:]
			} else {
				b = nil
			}
			if first {
				first = false
				continue
			}
			var fs [10][]byte
			n := 0
			for n < len(fs) {
				line = bytes.TrimLeft(line, " ")
				if len(line) == 0 {
					break
				}
				j := bytes.IndexByte(line, ' ')
				if j < 0 {
					j = len(line)
				}
				fs[n], line = line[:j], line[j:]
				n++
			}
			if n < 10 {
				continue
			}
			inode, _ := strconv.ParseUint(string(fs[9]), 10, 64)
			own := inode != 0 && owned[inode]
			if keep != nil && !keep(hexPort(fs[1]), hexPort(fs[2]), inode, own) {
				continue
			}
			out = append(out, Socket{
				Local: procAddr(string(fs[1])), Remote: procAddr(string(fs[2])),
				State: tcpStates[string(fs[3])], Inode: inode, Owned: own,
			})
		}
	}
	return out
}

// hexPort is the port of a /proc/net/tcp address ("0100007F:1F90").
func hexPort(a []byte) uint16 {
	i := bytes.IndexByte(a, ':')
	if i < 0 {
		return 0
	}
	var p uint16
	for _, c := range a[i+1:] {
		switch {
		case c >= '0' && c <= '9':
			p = p<<4 | uint16(c-'0')
		case c >= 'A' && c <= 'F':
			p = p<<4 | uint16(c-'A'+10)
		case c >= 'a' && c <= 'f':
			p = p<<4 | uint16(c-'a'+10)
		}
	}
	return p
}

// socketInodes returns the inodes of pid's socket descriptors.
func socketInodes(pid int) map[uint64]bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	m := make(map[uint64]bool, len(ents))
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if v, ok := strings.CutPrefix(l, "socket:["); ok {
			if n, err := strconv.ParseUint(strings.TrimSuffix(v, "]"), 10, 64); err == nil {
				m[n] = true
			}
		}
	}
	return m
}

// procAddr decodes "0100007F:1F90" (IPv4) or the 32-hex-digit IPv6 form:
// each 32-bit word is in host (little-endian here) byte order.
func procAddr(s string) netip.AddrPort {
	h, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}
	}
	raw, err := hex.DecodeString(h)
	if err != nil {
		return netip.AddrPort{}
	}
	port, _ := strconv.ParseUint(p, 16, 16)
	for i := 0; i+4 <= len(raw); i += 4 {
		binary.BigEndian.PutUint32(raw[i:], binary.LittleEndian.Uint32(raw[i:]))
	}
	a, ok := netip.AddrFromSlice(raw)
	if !ok {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}

// BalSocketStates counts, by state, the TCP sockets that belong to bal's
// side of the data path: sockets bal holds (listeners excluded), and
// orphans whose local port is bal's listen port or whose remote address is
// one of the backends (bal's closed backend sockets still in FIN_WAIT2,
// TIME_WAIT...). Health-check sockets count too: they are bal's.
func (p *Proc) BalSocketStates(backends ...string) map[string]int {
	p.T.Helper()
	bs := map[netip.AddrPort]bool{}
	for _, b := range backends {
		if ap, err := netip.ParseAddrPort(b); err == nil {
			bs[ap] = true
		}
	}
	ports := map[uint16]bool{}
	for b := range bs {
		ports[b.Port()] = true
	}
	keep := func(lp, rp uint16, inode uint64, owned bool) bool {
		return owned || (inode == 0 && (lp == uint16(p.Port) || ports[rp]))
	}
	out := map[string]int{}
	for _, s := range SocketsWhere(p.T, p.PID(), keep) {
		if s.State == "LISTEN" {
			continue
		}
		if s.Owned || s.Local.Port() == uint16(p.Port) || bs[s.Remote] {
			out[s.State]++
		}
	}
	return out
}

// CPUTime is the user+system CPU time pid has used so far.
func CPUTime(t testing.TB, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("stat of %d: %v", pid, err)
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command name may hold spaces
	fs := strings.Fields(s[i+1:])
	// Fields after the name start at 3 (state); utime and stime are 14 and 15.
	if len(fs) < 13 {
		t.Fatalf("stat of %d: short line %q", pid, s)
	}
	ut, _ := strconv.ParseInt(fs[11], 10, 64)
	st, _ := strconv.ParseInt(fs[12], 10, 64)
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / ticks
}

// CPUTime is bal's user+system CPU time so far.
func (p *Proc) CPUTime() time.Duration { return CPUTime(p.T, p.PID()) }

// SetNoFile sets bal's RLIMIT_NOFILE (soft and hard) with prlimit(2), as
// `prlimit --pid PID --nofile=N:N` does.
func (p *Proc) SetNoFile(n uint64) {
	p.T.Helper()
	rl := unix.Rlimit{Cur: n, Max: n}
	if err := unix.Prlimit(p.PID(), unix.RLIMIT_NOFILE, &rl, nil); err != nil {
		p.T.Fatalf("prlimit --nofile=%d on %d: %v", n, p.PID(), err)
	}
}

// Usage is a snapshot of a process's resources.
type Usage struct {
	FDs     int
	Threads int64
	RSSKiB  int64
}

func (u Usage) String() string {
	return fmt.Sprintf("%d fds, %d threads, %.1f MiB RSS", u.FDs, u.Threads, float64(u.RSSKiB)/1024)
}

// Usage measures bal now.
func (p *Proc) Usage() Usage {
	p.T.Helper()
	return Usage{FDs: p.FDs(), Threads: p.Threads(), RSSKiB: p.RSS()}
}

// WaitFDs waits up to timeout for bal's descriptor count to be within
// ±slack of want and returns the last count seen.
func (p *Proc) WaitFDs(want, slack int, timeout time.Duration) int {
	p.T.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := p.FDs()
		if (n >= want-slack && n <= want+slack) || time.Now().After(deadline) {
			return n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// QuietHealth are runtime lines that leave one health round, at start-up,
// and no more for an hour: tests that match each backend accept to a client
// connection use them with WaitHealthRound.
func QuietHealth() []string {
	return []string{"health_check_interval_ms: 3600000", "health_check_timeout_ms: 1000"}
}

// WaitHealthRound waits until bal reports a finished health round (its
// last_check_time is set): after that and with QuietHealth, every backend
// connection comes from a client.
func (p *Proc) WaitHealthRound(timeout time.Duration) {
	p.T.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if v, ok := p.Status()["last_check_time"]; ok && v != nil {
			return
		}
		if time.Now().After(deadline) {
			p.T.Fatalf("no health round finished within %v", timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
