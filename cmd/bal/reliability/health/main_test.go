//go:build linux

package health_test

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

func TestMain(m *testing.M) {
	baltest.HelperMain() // backend processes are this binary too
	baltest.MainLong(m)
}

// The defaults of the research note's §4: health interval i, fall f, rise
// r, check timeout t, connect timeout, idle timeout.
const (
	hcInterval     = 500 * time.Millisecond
	hcFall         = 3
	hcRise         = 2
	hcTimeout      = 200 * time.Millisecond
	connectTimeout = time.Second
	idleTimeout    = 2 * time.Second
)

// downBound is i×f + t + 1 s: how long after a fault the backend must be
// out of rotation.
const downBound = hcInterval*hcFall + hcTimeout + time.Second

// upBound is i×r + 1 s: how long after recovery it must be back.
const upBound = hcInterval*hcRise + time.Second

// defaultRuntime is the runtime block of §4's defaults; extra lines are
// appended (a later key would be a duplicate: pass only keys not set here).
func defaultRuntime(extra ...string) []string {
	rt := []string{
		fmt.Sprintf("health_check_interval_ms: %d", hcInterval.Milliseconds()),
		fmt.Sprintf("health_check_timeout_ms: %d", hcTimeout.Milliseconds()),
		fmt.Sprintf("health_check_fail_threshold: %d", hcFall),
		fmt.Sprintf("health_check_success_threshold: %d", hcRise),
		fmt.Sprintf("backend_connect_timeout_ms: %d", connectTimeout.Milliseconds()),
		fmt.Sprintf("connection_idle_timeout_ms: %d", idleTimeout.Milliseconds()),
		"drain_timeout_ms: 1000",
	}
	return append(rt, extra...)
}

// backendOf returns the status entry of backend addr.
func backendOf(t testing.TB, st map[string]any, addr string) map[string]any {
	t.Helper()
	bs, _ := st["backends"].([]any)
	for _, b := range bs {
		m, _ := b.(map[string]any)
		if m["address"] == addr {
			return m
		}
	}
	t.Fatalf("backend %s not in status: %v", addr, st["backends"])
	return nil
}

// attempts is the number of proxy connect attempts bal made to backends:
// successes plus failures by reason, summed over backends.
func attempts(st map[string]any) float64 {
	var n float64
	bs, _ := st["backends"].([]any)
	for _, b := range bs {
		m, _ := b.(map[string]any)
		n += baltest.Number(m, "total_connections") + baltest.Number(m, "counters", "timeout") + baltest.Number(m, "counters", "refused") + baltest.Number(m, "counters", "other")
	}
	return n
}

// transitions lists the "backend down"/"backend up" log entries of backend
// addr from log index from on, in order.
func transitions(p *baltest.Proc, from int, addr string) []baltest.LogEntry {
	var out []baltest.LogEntry
	for i := from; ; {
		var e baltest.LogEntry
		j := -1
		ed, id := p.FindLog(i, "backend down", map[string]string{"backend": addr})
		eu, iu := p.FindLog(i, "backend up", map[string]string{"backend": addr})
		switch {
		case id >= 0 && (iu < 0 || id < iu):
			e, j = ed, id
		case iu >= 0:
			e, j = eu, iu
		}
		if j < 0 {
			return out
		}
		out = append(out, e)
		i = j + 1
	}
}

// held is a long-lived proxied connection used to prove that a fault
// elsewhere does not touch it.
type held struct {
	name string
	c    net.Conn
}

// openHeld opens n connections through addr and keeps them; each knows its
// backend. The cleanup closes them.
func openHeld(t testing.TB, n int, dial func(string, time.Duration) (net.Conn, error), addr string) []held {
	t.Helper()
	var out []held
	for range n {
		c, err := dial(addr, 2*time.Second)
		if err != nil {
			t.Fatalf("held connection: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		name, err := baltest.ReadName(c)
		if err != nil {
			t.Fatalf("held connection: %v", err)
		}
		_ = c.SetDeadline(time.Time{})
		out = append(out, held{name, c})
	}
	return out
}

// echo round-trips msg on h.
func (h held) echo(msg string) error {
	_ = h.c.SetDeadline(time.Now().Add(2 * time.Second))
	defer h.c.SetDeadline(time.Time{})
	if _, err := h.c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	n := 0
	for n < len(buf) {
		k, err := h.c.Read(buf[n:])
		n += k
		if err != nil {
			return err
		}
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// pinger keeps held connections busy (so the idle timeout does not end
// them) with an echo every 300 ms, and remembers every failure.
type pinger struct {
	stop chan struct{}
	done chan struct{}
	ok   int
	errs []error
}

// startPinger pings every connection of hs not on a backend named skip.
func startPinger(hs []held, skip string) *pinger {
	pg := &pinger{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(pg.done)
		for n := 0; ; n++ {
			for i, h := range hs {
				if h.name == skip {
					continue
				}
				if err := h.echo(fmt.Sprintf("ping %d/%d", n, i)); err != nil {
					pg.errs = append(pg.errs, fmt.Errorf("held connection %d on %s: %w", i, h.name, err))
				} else {
					pg.ok++
				}
			}
			select {
			case <-pg.stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	return pg
}

// Stop ends the pings and returns the successful echoes and the failures.
func (pg *pinger) Stop() (int, []error) {
	select {
	case <-pg.stop:
	default:
		close(pg.stop)
	}
	<-pg.done
	return pg.ok, pg.errs
}

func netDial(addr string, d time.Duration) (net.Conn, error) { return net.DialTimeout("tcp", addr, d) }

func ms(d time.Duration) string { return fmt.Sprintf("%d ms", d.Milliseconds()) }

// openDuring reports whether the connection of o was open at some moment
// of [from, to] (it may then have been on a backend killed in between).
func openDuring(o baltest.Outcome, from, to time.Time) bool {
	return !o.Start.After(to) && !o.Start.Add(o.Took).Before(from)
}
