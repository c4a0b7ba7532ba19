//go:build linux

package baltest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// InNS runs f on an OS thread that has joined the network namespace ns
// (see NetNS), so that every socket f creates — listeners, dials — lives in
// that namespace; goroutines f starts run elsewhere, but sockets keep their
// namespace for life, so accept loops and reads may run anywhere. The
// thread is discarded afterwards. A t.Fatal inside f fails t and returns.
func InNS(t testing.TB, ns string, f func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		// Never unlocked: a thread that changed namespace must not go back
		// to the pool; the runtime ends it when this goroutine exits.
		runtime.LockOSThread()
		var ok bool
		defer func() {
			if !ok {
				done <- fmt.Errorf("function in %s did not return (t.Fatal?)", ns)
			}
		}()
		if err := joinNS(ns); err != nil {
			ok = true
			done <- err
			return
		}
		f()
		ok = true
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func joinNS(ns string) error {
	fd, err := unix.Open(filepath.Join("/run/netns", ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", ns, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns %s: %w", ns, err)
	}
	return nil
}

// NSDialer dials TCP from inside a network namespace: a few goroutines
// locked on threads that joined it take dial requests. The connections it
// returns may be used from any goroutine. The cleanup stops the workers.
type NSDialer struct {
	ns   string
	reqs chan dialReq
	stop chan struct{}
}

type dialReq struct {
	ctx  context.Context
	addr string
	out  chan dialRes
}

type dialRes struct {
	c   net.Conn
	err error
}

// NewNSDialer starts workers dialers in ns ("" means the test's own
// namespace: no thread is moved).
func NewNSDialer(t testing.TB, ns string, workers int) *NSDialer {
	t.Helper()
	d := &NSDialer{ns: ns, reqs: make(chan dialReq), stop: make(chan struct{})}
	ready := make(chan error, workers)
	for range max(workers, 1) {
		go func() {
			if ns != "" {
				runtime.LockOSThread() // never unlocked, see InNS
				if err := joinNS(ns); err != nil {
					ready <- err
					return
				}
			}
			ready <- nil
			var nd net.Dialer
			for {
				select {
				case <-d.stop:
					return
				case r := <-d.reqs:
					c, err := nd.DialContext(r.ctx, "tcp", r.addr)
					r.out <- dialRes{c, err}
				}
			}
		}()
	}
	for range max(workers, 1) {
		if err := <-ready; err != nil {
			close(d.stop)
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { close(d.stop) })
	return d
}

// Dial connects to addr ("ip:port") within timeout.
func (d *NSDialer) Dial(addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r := dialReq{ctx: ctx, addr: addr, out: make(chan dialRes, 1)}
	select {
	case d.reqs <- r:
	case <-d.stop:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	res := <-r.out
	return res.c, res.err
}

// NeedNft skips t when nft (Debian package nftables) is not installed or
// network namespaces cannot be made (not root).
func NeedNft(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("nftables rules in a network namespace need root here")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not installed (Debian package nftables): skipping the nftables fault test")
	}
}

// Nft is an nftables table "baltest" (family inet) in namespace ns, with an
// input and an output chain, for fault rules. Rules are added with Add and
// removed by handle with Delete or all at once with Flush.
type Nft struct {
	t  testing.TB
	ns string
}

// NewNft creates the table in ns (NeedNft first).
func NewNft(t testing.TB, ns string) *Nft {
	t.Helper()
	n := &Nft{t: t, ns: ns}
	n.run("add table inet baltest")
	n.run("add chain inet baltest input { type filter hook input priority 0 ; policy accept ; }")
	n.run("add chain inet baltest output { type filter hook output priority 0 ; policy accept ; }")
	return n
}

func (n *Nft) run(cmd string) string {
	n.t.Helper()
	return NSRun(n.t, n.ns, append([]string{"nft", "-e", "-a"}, strings.Fields(cmd)...)...)
}

// Add appends rule (e.g. "tcp dport 9000 tcp flags syn drop") to chain
// (input or output) and returns its handle.
func (n *Nft) Add(chain, rule string) string {
	n.t.Helper()
	out := n.run("add rule inet baltest " + chain + " " + rule)
	i := strings.LastIndex(out, "# handle ")
	if i < 0 {
		n.t.Fatalf("nft gave no handle for %q: %s", rule, out)
	}
	return strings.Fields(out[i+len("# handle "):])[0]
}

// Delete removes the rule with handle h from chain.
func (n *Nft) Delete(chain, h string) {
	n.t.Helper()
	n.run("delete rule inet baltest " + chain + " handle " + h)
}

// Flush removes every rule of the table.
func (n *Nft) Flush() {
	n.t.Helper()
	n.run("flush table inet baltest")
}

// Ruleset is `nft list table inet baltest` (with counters), for logs.
func (n *Nft) Ruleset() string {
	n.t.Helper()
	return n.run("list table inet baltest")
}
