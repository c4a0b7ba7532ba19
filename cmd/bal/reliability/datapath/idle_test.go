//go:build linux

package datapath

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// TestIdleTimeoutSlowloris is research test 23. Idle timeout 2 s; silent
// connections, connections trickling one byte every 1.5 s, and
// connections that half-close and go silent (the backend keeps its side
// open). Silent and half-closed ones must be closed by bal at 2 s ± 0.5 s
// (none alive after 3 s); trickling ones stay alive for the whole run with
// every byte delivered; 5 s after the run bal's descriptors are back to
// the baseline.
func TestIdleTimeoutSlowloris(t *testing.T) {
	silent, trickle, half := baltest.Pick(200, 2000), baltest.Pick(20, 200), baltest.Pick(20, 200)
	runFor := baltest.Pick(6*time.Second, 30*time.Second)
	const idle, tick = 2 * time.Second, 1500 * time.Millisecond
	baltest.ForEngine(t, func(t *testing.T, eng string) {
		r := newRig(t, eng, rigOptions{runtime: []string{fmt.Sprintf("connection_idle_timeout_ms: %d", idle.Milliseconds())}})
		base := warmUp(t, r, trickle)
		// The backend side: count what arrives, never close first.
		var delivered atomic.Int64
		quit := make(chan struct{})
		t.Cleanup(func() { close(quit) })
		go func() {
			for {
				select {
				case <-quit:
					return
				case b := <-r.acc:
					go func() { n, _ := io.Copy(io.Discard, b); delivered.Add(n) }()
				}
			}
		}()

		type ended struct {
			after time.Duration
			err   error
		}
		watch := func(c *net.TCPConn, from time.Time, out chan<- ended) {
			_ = c.SetReadDeadline(from.Add(runFor + 10*time.Second))
			_, err := io.Copy(io.Discard, c)
			out <- ended{time.Since(from), err}
		}
		silentEnd := make(chan ended, silent)
		halfEnd := make(chan ended, half)
		trickleEnd := make(chan ended, trickle)
		var sent atomic.Int64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		began := time.Now()
		for i := range silent + half + trickle {
			c, err := r.dial()
			if err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			at := time.Now()
			switch {
			case i%10 == 0 && i/10 < half: // spread the kinds over the opening
				if err := c.CloseWrite(); err != nil {
					t.Fatal(err)
				}
				go watch(c, at, halfEnd)
			case i%10 == 5 && i/10 < trickle:
				go watch(c, at, trickleEnd)
				wg.Add(1)
				go func() {
					defer wg.Done()
					tk := time.NewTicker(tick)
					defer tk.Stop()
					for {
						select {
						case <-stop:
							return
						case <-tk.C:
						}
						if _, err := c.Write([]byte{'.'}); err != nil {
							return
						}
						sent.Add(1)
					}
				}()
			default:
				go watch(c, at, silentEnd)
			}
		}
		opened := time.Since(began)
		n := map[string]int{"silent": 0, "half": 0, "trickle": 0}
		for i := range silent + half + trickle {
			switch {
			case i%10 == 0 && i/10 < half:
				n["half"]++
			case i%10 == 5 && i/10 < trickle:
				n["trickle"]++
			default:
				n["silent"]++
			}
		}
		// Collect the idle closes.
		check := func(name string, ch chan ended, count int) (early, late int, lo, hi time.Duration) {
			lo = time.Hour
			for range count {
				var e ended
				select {
				case e = <-ch:
				case <-time.After(runFor + 15*time.Second):
					late++
					continue
				}
				lo, hi = min(lo, e.after), max(hi, e.after)
				switch {
				case e.after < idle-idle/4:
					early++
				case e.after > idle+idle/4 || e.err != nil:
					late++
					if e.err != nil {
						t.Errorf("%s connection: %v after %v (want EOF from bal's idle close)", name, e.err, e.after)
					}
				}
			}
			return early, late, lo, hi
		}
		sEarly, sLate, sLo, sHi := check("silent", silentEnd, n["silent"])
		hEarly, hLate, hLo, hHi := check("half-closed", halfEnd, n["half"])
		// The trickling ones must still be open at the end of the run.
		time.Sleep(time.Until(began.Add(runFor)))
		cut := len(trickleEnd)
		close(stop)
		wg.Wait()
		deadline := time.Now().Add(5 * time.Second)
		for delivered.Load() < sent.Load() && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		r.closeAll()
		fds := r.bal.WaitFDs(base, 2, 5*time.Second)
		pass := sEarly+sLate+hEarly+hLate+cut == 0 && delivered.Load() == sent.Load() && fdsBack(base, fds)
		if !pass {
			t.Errorf("silent: %d early, %d late; half-closed: %d early, %d late; trickling cut: %d; bytes %d sent, %d delivered; fds %d (baseline %d)",
				sEarly, sLate, hEarly, hLate, cut, sent.Load(), delivered.Load(), fds, base)
		}
		baltest.Record(t, 23, fmt.Sprintf("%s: idle 2 s; %d silent closed after %v–%v, %d half-closed after %v–%v (bound 2 s ± 0.5 s); %d trickling (1 B/1.5 s) alive for %v with %d/%d bytes delivered; fds %d (warm baseline %d); opened in %v",
			eng, n["silent"], sLo.Round(10*time.Millisecond), sHi.Round(10*time.Millisecond), n["half"], hLo.Round(10*time.Millisecond), hHi.Round(10*time.Millisecond),
			n["trickle"]-cut, runFor, delivered.Load(), sent.Load(), fds, base, opened.Round(10*time.Millisecond)), pass)
	})
}
