//go:build linux

package datapath

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// halfCloseIdle is the idle timeout of the half-close runs: a socket left
// half-closed by bal would be cut by it, so lingering sockets are looked
// for within this + 1 s.
const halfCloseIdle = 3 * time.Second

// TestHalfClose is research test 16. (a) The client writes 4 KiB and
// half-closes; the backend reads exactly 4 KiB then EOF, writes 1 MiB and
// closes; the client reads exactly 1 MiB then EOF. (b) The mirror: the
// backend writes 4 KiB and half-closes first, the client reads it to EOF,
// then sends 1 MiB that must all arrive before the backend's EOF.
// Afterwards no bal socket lingers and bal's descriptors are back to their
// baseline ± 2.
func TestHalfClose(t *testing.T) {
	iters := baltest.Pick(100, 1000)
	baltest.ForEngine(t, func(t *testing.T, eng string) {
		r := newRig(t, eng, rigOptions{runtime: []string{fmt.Sprintf("connection_idle_timeout_ms: %d", halfCloseIdle.Milliseconds())}})
		// Warm up so that the pipe pools hold what this workload uses.
		for range 5 {
			if err := halfCloseOnce(r, false); err != nil {
				t.Fatalf("warm-up: %v", err)
			}
			if err := halfCloseOnce(r, true); err != nil {
				t.Fatalf("warm-up: %v", err)
			}
		}
		time.Sleep(200 * time.Millisecond) // let the last close land
		base := r.bal.FDs()
		okA, okB := 0, 0
		for i := range iters {
			if err := halfCloseOnce(r, false); err != nil {
				t.Errorf("(a) client first, iteration %d: %v", i, err)
			} else {
				okA++
			}
			if err := halfCloseOnce(r, true); err != nil {
				t.Errorf("(b) backend first, iteration %d: %v", i, err)
			} else {
				okB++
			}
			if i%100 == 99 {
				r.forget()
			}
		}
		r.forget()
		bad, quiet := r.waitQuiet(halfCloseIdle + time.Second)
		fds := r.bal.WaitFDs(base, 2, halfCloseIdle+time.Second)
		pass := okA == iters && okB == iters && bad == "" && fdsBack(base, fds)
		if bad != "" {
			t.Errorf("bal sockets still open %v after the last connection: %s", quiet.Round(time.Millisecond), bad)
		}
		baltest.Record(t, 16, fmt.Sprintf("%s: (a) client-first %d/%d, (b) backend-first %d/%d exact; lingering bal sockets (checked %v after): %q; fds %d (warm baseline %d)",
			eng, okA, iters, okB, iters, quiet.Round(time.Millisecond), bad, fds, base), pass)
	})
}

// halfCloseOnce runs one iteration; backendFirst selects (b).
func halfCloseOnce(r *rig, backendFirst bool) error {
	const small, big = 4 << 10, 1 << 20
	c, b, err := r.pipe()
	if err != nil {
		return err
	}
	defer c.Close()
	defer b.Close()
	deadline := time.Now().Add(20 * time.Second)
	_ = c.SetDeadline(deadline)
	_ = b.SetDeadline(deadline)
	// first half-closes after small bytes; second reads them to EOF, then
	// sends big bytes and closes; first reads them to EOF.
	first, second := c, b
	if backendFirst {
		first, second = b, c
	}
	var wg sync.WaitGroup
	var secondErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		got := readStream(second, small, nil)
		switch {
		case got.err != nil:
			secondErr = fmt.Errorf("reading the %d bytes before the FIN: %w", small, got.err)
			return
		case got.n != small || got.sum != streamSum(seedUp, small):
			secondErr = fmt.Errorf("got %d bytes before the FIN (exact %v), want %d", got.n, got.sum == streamSum(seedUp, small), small)
			return
		}
		if _, err := writeStream(second, seedDown, big); err != nil {
			secondErr = fmt.Errorf("writing %d bytes after the peer's FIN: %w", big, err)
			return
		}
		if err := closeConn(second); err != nil {
			secondErr = err
		}
	}()
	var firstErr error
	if _, err := writeStream(first, seedUp, small); err != nil {
		firstErr = fmt.Errorf("writing %d bytes: %w", small, err)
	} else if err := first.CloseWrite(); err != nil {
		firstErr = fmt.Errorf("half-close: %w", err)
	} else {
		got := readStream(first, big, nil)
		switch {
		case got.err != nil:
			firstErr = fmt.Errorf("reading after its own FIN: %d bytes, then %w", got.n, got.err)
		case got.n != big || got.sum != streamSum(seedDown, big):
			firstErr = fmt.Errorf("got %d bytes after its own FIN (exact %v), want %d", got.n, got.sum == streamSum(seedDown, big), big)
		}
	}
	wg.Wait()
	if secondErr != nil {
		return fmt.Errorf("second speaker: %w", secondErr)
	}
	if firstErr != nil {
		return fmt.Errorf("first speaker: %w", firstErr)
	}
	return nil
}

// closeConn closes c (a full close after the stream, as the research says).
func closeConn(c *net.TCPConn) error { return c.Close() }
