//go:build linux

package datapath

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
	"github.com/bal-lb/bal/engine/enginetest"
)

// Endings of a churned connection; the first byte of the client's message
// tells the backend which one to play.
const (
	endClientClose  = 'c' // client closes after the echo; backend closes on EOF
	endBackendClose = 'b' // backend closes after the echo; client reads EOF
	endClientReset  = 'r' // client resets after the echo
	endBackendReset = 'R' // backend resets after the echo
	endDead         = 'd' // to a bal whose only backend is a closed port
)

// churnBackend echoes one 1 KiB message and ends as the message says.
func churnBackend(c *net.TCPConn) {
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	msg := make([]byte, 1024)
	if _, err := io.ReadFull(c, msg); err != nil {
		return // a health check, or a client reset
	}
	if _, err := c.Write(msg); err != nil {
		return
	}
	switch msg[0] {
	case endBackendClose:
		_ = c.CloseWrite()
		_, _ = io.Copy(io.Discard, c)
	case endBackendReset:
		_ = c.SetLinger(0)
	default:
		_, _ = io.Copy(io.Discard, c) // until the client's FIN or reset
	}
}

// churnOne runs one connection with the given ending from source src.
func churnOne(addr string, src net.IP, end byte, msg []byte) error {
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: src}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	c := nc.(*net.TCPConn)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if end == endDead {
		// bal must close it at once: no backend to give it to.
		n, err := io.Copy(io.Discard, c)
		if err != nil && !baltest.IsReset(err) || n != 0 {
			return fmt.Errorf("no-backend connection: %d bytes, %v", n, err)
		}
		return nil
	}
	m := bytes.Clone(msg)
	m[0] = end
	if _, err := c.Write(m); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	got := make([]byte, len(m))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	if !bytes.Equal(got, m) {
		return errors.New("echo differs")
	}
	switch end {
	case endClientClose:
		return c.Close()
	case endClientReset:
		_ = c.SetLinger(0)
		return c.Close()
	case endBackendClose:
		if n, err := io.Copy(io.Discard, c); err != nil || n != 0 {
			return fmt.Errorf("after the backend's close: %d bytes, %v (want EOF)", n, err)
		}
	case endBackendReset:
		if n, err := io.Copy(io.Discard, c); (err != nil && !baltest.IsReset(err)) || n != 0 {
			return fmt.Errorf("after the backend's reset: %d bytes, %v (want a reset)", n, err)
		}
	}
	return nil
}

// churnStats counts a churn run.
type churnStats struct {
	done, failed, dead atomic.Int64
	firstErr           atomic.Value
}

// churn runs total connections at up to rate per second with conc workers,
// sources 127.0.0.2–9, endings in turn (every 20th to the dead bal).
func churn(live, dead string, total, rate, conc int) (*churnStats, time.Duration) {
	st := &churnStats{}
	msg := make([]byte, 1024)
	_, _ = enginetest.NewStream(2000, 1024).Read(msg)
	endings := []byte{endClientClose, endBackendClose, endClientReset, endBackendReset}
	jobs := make(chan int, conc)
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				src := net.IPv4(127, 0, 0, byte(2+i%8))
				end, addr := endings[(i/8)%len(endings)], live
				if i%20 == 19 {
					end, addr = endDead, dead
					st.dead.Add(1)
				}
				if err := churnOne(addr, src, end, msg); err != nil {
					if st.failed.Add(1) == 1 {
						st.firstErr.Store(fmt.Errorf("connection %d (%c from %v): %w", i, end, src, err))
					}
				}
				st.done.Add(1)
			}
		}()
	}
	began := time.Now()
	for i := range total {
		if rate > 0 {
			if ahead := time.Duration(i)*time.Second/time.Duration(rate) - time.Since(began); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	return st, time.Since(began)
}

// TestChurn is research test 20: short connections (connect, 1 KiB echo,
// close) from 127.0.0.2–9 with mixed endings — client closes first,
// backend closes first, client reset, backend reset, and 5 % to a bal
// whose backend port is dead (bal closes them: those are the injected
// failures). Afterwards bal holds no ESTABLISHED or CLOSE_WAIT socket and
// its descriptors, goroutines (from status), threads and RSS are back to
// the warm baseline.
func TestChurn(t *testing.T) {
	total := baltest.Pick(3000, 100000)
	rate := baltest.Pick(1000, 2000)
	const conc = 64
	run := func(t *testing.T, eng string) {
		be := baltest.NewBackend(t, churnBackend)
		live := baltest.Start(t, baltest.Config{Port: baltest.FreePort(t), Engine: eng, LogLevel: "info",
			Backends: []string{be.Addr()}, Runtime: []string{"connection_idle_timeout_ms: 30000"}})
		deadBE := enginetest.DeadAddr(t)
		dead := baltest.Start(t, baltest.Config{Port: baltest.FreePort(t), Engine: eng, LogLevel: "info",
			Backends: []string{deadBE.String()}})
		// Warm up with the same mix, then take the baseline.
		if st, _ := churn(live.Addr(), dead.Addr(), 400, 0, conc); st.failed.Load() > 0 {
			t.Fatalf("warm-up: %d failed: %v", st.failed.Load(), st.firstErr.Load())
		}
		time.Sleep(baltest.Pick(time.Second, 10*time.Second))
		base := live.Usage()
		baseG := goroutines(live)
		st, took := churn(live.Addr(), dead.Addr(), total, rate, conc)
		settle := baltest.Pick(3*time.Second, 10*time.Second)
		time.Sleep(settle)
		deadline := time.Now().Add(10 * time.Second)
		var bad map[string]int
		for {
			bad = live.BalSocketStates(be.Addr())
			if bad["ESTABLISHED"]+bad["CLOSE_WAIT"] == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		fds := live.WaitFDs(base.FDs, 2, 5*time.Second)
		after := live.Usage()
		after.FDs = fds
		active := activeConns(live)
		afterG := goroutines(live)
		var ferr any
		if st.failed.Load() > 0 {
			ferr = st.firstErr.Load()
			t.Errorf("first failure: %v", ferr)
		}
		pass := st.failed.Load() == 0 && bad["ESTABLISHED"]+bad["CLOSE_WAIT"] == 0 && active == 0 &&
			fdsBack(base.FDs, fds) && after.RSSKiB <= base.RSSKiB+20<<10 && after.Threads <= base.Threads+2 &&
			baseG > 0 && afterG <= baseG+4 && afterG >= baseG-4
		baltest.Record(t, 20, fmt.Sprintf("%s: %d connections in %v (%.0f/s, %d at a time, 8 sources, 4 endings + %d to a dead backend): %d failures beyond the injected; %v later: ESTABLISHED %d, CLOSE_WAIT %d, active %d; warm baseline %v, %d goroutines → %v, %d goroutines",
			eng, total, took.Round(100*time.Millisecond), float64(total)/took.Seconds(), conc, st.dead.Load(), st.failed.Load(),
			settle, bad["ESTABLISHED"], bad["CLOSE_WAIT"], active, base, baseG, after, afterG), pass)
	}
	for _, eng := range baltest.Engines() {
		t.Run(eng, func(t *testing.T) {
			if !baltest.Soaking() {
				t.Parallel() // the soak run wants the rate: one engine at a time
			}
			run(t, eng)
		})
	}
}
