//go:build linux

package baltest

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// NSDo runs fn on an OS thread that has entered the network namespace ns
// (see NetNS): sockets fn creates (net.Listen, net.Dial with IP literals)
// live in ns and keep working from any goroutine afterwards. The thread
// returns to the original namespace after fn; if it cannot, it is retired
// with its goroutine so that no other goroutine runs in ns by accident.
func NSDo(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open("/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			// Keep the thread locked: it dies with this goroutine.
			errc <- fmt.Errorf("leaving %s: %w (fn: %v)", ns, err, ferr)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

var vethSeq atomic.Int64

// Veth joins namespaces a and b with a veth pair of the given MTU,
// addressed addrA and addrB (CIDR, e.g. "10.201.0.1/24"), both up. The
// pair goes away with the namespaces.
func Veth(t testing.TB, a, b, addrA, addrB string, mtu int) {
	t.Helper()
	n := vethSeq.Add(1)
	ia, ib := fmt.Sprintf("bt%da%d", os.Getpid()%100000, n), fmt.Sprintf("bt%db%d", os.Getpid()%100000, n)
	NSRun(t, a, "ip", "link", "add", ia, "type", "veth", "peer", "name", ib, "netns", b)
	NSRun(t, a, "ip", "link", "set", ia, "mtu", fmt.Sprint(mtu), "up")
	NSRun(t, b, "ip", "link", "set", ib, "mtu", fmt.Sprint(mtu), "up")
	NSRun(t, a, "ip", "addr", "add", addrA, "dev", ia)
	NSRun(t, b, "ip", "addr", "add", addrB, "dev", ib)
}

// Sysctl sets key=value inside namespace ns (per-namespace keys such as
// net.ipv4.tcp_rmem, net.ipv4.ip_local_port_range, net.ipv4.tcp_tw_reuse).
func Sysctl(t testing.TB, ns, key, value string) {
	t.Helper()
	NSRun(t, ns, "sysctl", "-q", "-w", key+"="+value)
}

// NeedTools skips t, naming the Debian package to install, when a command
// it runs is not on PATH (ip: iproute2, sysctl: procps, tc: iproute2).
func NeedTools(t testing.TB, names ...string) {
	t.Helper()
	pkgs := map[string]string{"ip": "iproute2", "tc": "iproute2", "sysctl": "procps", "ss": "iproute2", "prlimit": "util-linux"}
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			t.Skipf("%s is not installed (apt-get install %s)", n, pkgs[n])
		}
	}
}
