//go:build linux

package datapath

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// TestMaxConnectionsReject is research test 22 with bal's only policy,
// overload_policy: reject (docs/design.md#relay-semantics: connections beyond
// max_concurrent_connections are reset at once and counted in
// rejected_connections; there is no queue). Limit M, M+E silent
// connections: the backend sees exactly M, the E extra are reset within
// 100 ms with 0 bytes, status counts E; over several fill/drain cycles no
// slot leaks (a last fill admits exactly M again).
func TestMaxConnectionsReject(t *testing.T) {
	limit := baltest.Pick(200, 1000)
	extra := limit / 5
	cycles := baltest.Pick(3, 10)
	const bound = 100 * time.Millisecond
	baltest.ForEngine(t, func(t *testing.T, eng string) {
		r := newRig(t, eng, rigOptions{runtime: []string{
			fmt.Sprintf("max_concurrent_connections: %d", limit),
			"overload_policy: reject",
			"connection_idle_timeout_ms: 60000",
		}})
		pass := true
		var worstReject time.Duration
		var rtts []time.Duration
		for cycle := range cycles + 1 {
			last := cycle == cycles
			n := limit + extra
			if last {
				n = limit // the leak check: exactly M must fit again
			}
			rejBefore := rejected(r.bal)
			f := fill(t, r, n, bound)
			worstReject = max(worstReject, f.worstReject)
			rtts = append(rtts, f.rtts...)
			wantRej := extra
			if last {
				wantRej = 0
			}
			rej := rejected(r.bal) - rejBefore
			if f.admitted != limit || f.backend != limit || f.rejected != wantRej || rej != wantRej || f.late > 0 || f.bytes > 0 {
				pass = false
				t.Errorf("cycle %d: %d opened: %d admitted, backend saw %d, %d reset (%d later than %v, %d bytes before the reset), status rejected +%d; want %d admitted, %d rejected",
					cycle, n, f.admitted, f.backend, f.rejected, f.late, bound, f.bytes, rej, limit, wantRej)
			}
			f.close()
			if got, ok := waitActive(r.bal, 0, 10*time.Second); !ok {
				pass = false
				t.Errorf("cycle %d: %d connections still active 10 s after every client closed", cycle, got)
			}
			r.forget()
		}
		slices.Sort(rtts)
		p99 := rtts[len(rtts)*99/100]
		figure := fmt.Sprintf("%s: M=%d, %d opened per cycle × %d cycles: backend saw exactly M, %d reset each time (slowest reset %v, bound %v, 0 bytes), status rejected counted them; a last fill admitted exactly M (no leaked slot); echo p99 on admitted %v",
			eng, limit, limit+extra, cycles, extra, worstReject.Round(time.Millisecond), bound, p99.Round(100*time.Microsecond))
		if baltest.Soaking() && p99 >= 10*time.Millisecond {
			pass = false
			t.Errorf("echo p99 %v on admitted connections (bound 10 ms)", p99)
		}
		baltest.Record(t, 22, figure, pass)
	})
}

// rejected is bal's rejected_connections from status.
func rejected(p *baltest.Proc) int {
	v, _ := p.Status()["rejected_connections"].(float64)
	return int(v)
}

type fillResult struct {
	admitted, rejected, late, backend int
	bytes                             int64
	worstReject                       time.Duration
	rtts                              []time.Duration
	close                             func()
}

// fill opens n silent connections and sorts them into admitted (still open
// after a settle time; their backend side echoes) and reset ones.
func fill(t *testing.T, r *rig, n int, bound time.Duration) fillResult {
	t.Helper()
	type conn struct {
		c     *net.TCPConn
		ended chan struct{}
		took  time.Duration
		n     int64
		err   error
	}
	conns := make([]*conn, 0, n)
	var backends []*net.TCPConn
	res := fillResult{}
	res.close = func() {
		for _, c := range conns {
			if c.c != nil {
				c.c.Close()
			}
		}
		for _, b := range backends {
			b.Close()
		}
	}
	for i := range n {
		at := time.Now()
		c, err := r.dial()
		if baltest.IsReset(err) {
			// Reset before connect(2) even returned: rejected at once.
			cn := &conn{ended: make(chan struct{}), took: time.Since(at), err: err}
			close(cn.ended)
			conns = append(conns, cn)
			continue
		}
		if err != nil {
			res.close()
			t.Fatalf("connection %d: %v", i, err)
		}
		cn := &conn{c: c, ended: make(chan struct{})}
		go func() {
			defer close(cn.ended)
			buf := make([]byte, 64)
			m, err := c.Read(buf) // silent: only a reset or EOF ends this early
			cn.took, cn.n, cn.err = time.Since(at), int64(m), err
		}()
		conns = append(conns, cn)
	}
	// Settle: bal has accepted or reset every connection; the backend got
	// the admitted ones.
	time.Sleep(time.Second)
	for drained := false; !drained; {
		select {
		case b := <-r.acc:
			backends = append(backends, b)
			go func() { _, _ = io.Copy(b, b) }()
		default:
			drained = true
		}
	}
	res.backend = len(backends)
	var open []*conn
	for _, cn := range conns {
		select {
		case <-cn.ended:
			res.rejected++
			res.bytes += cn.n
			res.worstReject = max(res.worstReject, cn.took)
			if cn.took > bound || !baltest.IsReset(cn.err) && !errors.Is(cn.err, io.EOF) {
				res.late++
			}
		default:
			open = append(open, cn)
		}
	}
	res.admitted = len(open)
	// One echo on every admitted connection, one at a time: each is served.
	for _, cn := range open {
		_ = cn.c.SetDeadline(time.Now().Add(10 * time.Second))
		began := time.Now()
		_, err := cn.c.Write([]byte("0123456789abcdef"))
		if err == nil {
			<-cn.ended // the reader goroutine takes the echo
			if cn.err != nil || cn.n == 0 {
				err = fmt.Errorf("echo: %d bytes, %v", cn.n, cn.err)
			}
		}
		if err != nil {
			t.Errorf("admitted connection not served: %v", err)
			continue
		}
		res.rtts = append(res.rtts, time.Since(began))
	}
	return res
}
