package baltest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// Config is an advanced-mode config for a test instance.
type Config struct {
	Port     int
	Bind     string   // default 127.0.0.1
	Engine   string   // gnet | std | "" (auto)
	Method   string   // default round_robin
	LogLevel string   // default debug
	Backends []string // "127.0.0.1:9000" or "127.0.0.1:9000 3" (with a weight)
	Runtime  []string // "key: value" lines under runtime:
	Extra    []string // extra top-level lines
}

// String renders the YAML.
func (c Config) String() string {
	var b strings.Builder
	def := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	fmt.Fprintf(&b, "mode: advanced\nport: %d\nbind_address: %q\nmethod: %s\nlog_level: %s\n",
		c.Port, def(c.Bind, "127.0.0.1"), def(c.Method, "round_robin"), def(c.LogLevel, "debug"))
	for _, l := range c.Extra {
		b.WriteString(l + "\n")
	}
	b.WriteString("runtime:\n")
	if c.Engine != "" {
		fmt.Fprintf(&b, "  engine: %s\n", c.Engine)
	}
	for _, l := range c.Runtime {
		b.WriteString("  " + l + "\n")
	}
	b.WriteString("backends:\n")
	for _, be := range c.Backends {
		addr, weight, _ := strings.Cut(be, " ")
		ap := netip.MustParseAddrPort(addr)
		fmt.Fprintf(&b, "  - host: %q\n    port: %d\n", ap.Addr().String(), ap.Port())
		if weight != "" {
			fmt.Fprintf(&b, "    weight: %s\n", weight)
		}
	}
	return b.String()
}

// Override returns the runtime lines rt ("key: value") with every line of
// lines put in: in place of rt's line with the same key, else at the end.
// rt is not changed.
func Override(rt []string, lines ...string) []string {
	out := append([]string(nil), rt...)
	for _, l := range lines {
		k, _, _ := strings.Cut(l, ":")
		found := false
		for i, o := range out {
			if ok, _, _ := strings.Cut(o, ":"); ok == k {
				out[i], found = l, true
			}
		}
		if !found {
			out = append(out, l)
		}
	}
	return out
}

// FreePort returns a loopback port nobody listens on right now.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// WriteFile writes content with mode 0600.
func WriteFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
