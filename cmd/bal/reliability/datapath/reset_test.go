//go:build linux

package datapath

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// TestResetPropagation is research test 18. (a) The backend resets
// (SO_LINGER 0, close) in the middle of a download: the client's
// connection must end within 1 s, and should end with ECONNRESET rather
// than a clean EOF (docs/design.md#relay-semantics: a reset from either side resets the other),
// so that a truncated stream cannot pass as complete. (b) The client
// resets in the middle of an upload: the backend must see a reset or EOF
// within 1 s. Afterwards bal holds no socket of these connections (no
// CLOSE_WAIT) and its descriptors are back to the warm baseline.
func TestResetPropagation(t *testing.T) {
	iters := baltest.Pick(10, 200)
	const bound = time.Second
	baltest.ForEngine(t, func(t *testing.T, eng string) {
		r := newRig(t, eng, rigOptions{runtime: []string{"connection_idle_timeout_ms: 30000"}})
		for _, fromBackend := range []bool{true, false} {
			name := "(a) backend reset mid-download"
			if !fromBackend {
				name = "(b) client reset mid-upload"
			}
			if _, err := resetOnce(r, fromBackend); err != nil { // warm-up
				t.Fatalf("%s warm-up: %v", name, err)
			}
			time.Sleep(200 * time.Millisecond)
			base := r.bal.FDs()
			ended, resets := 0, 0
			var slowest time.Duration
			for i := range iters {
				res, err := resetOnce(r, fromBackend)
				if err != nil {
					t.Errorf("%s %d: %v", name, i, err)
					continue
				}
				slowest = max(slowest, res.took)
				if res.took > bound {
					t.Errorf("%s %d: the other side ended %v after the reset (bound %v)", name, i, res.took, bound)
					continue
				}
				ended++
				if res.reset {
					resets++
				} else if fromBackend {
					t.Errorf("%s %d: the client saw a clean EOF after %d bytes: a truncated download looks complete", name, i, res.n)
				}
			}
			r.forget()
			bad, _ := r.waitQuiet(2 * time.Second)
			fds := r.bal.WaitFDs(base, 2, 2*time.Second)
			pass := ended == iters && bad == "" && fdsBack(base, fds) && (!fromBackend || resets == iters)
			if bad != "" {
				t.Errorf("%s: bal sockets left: %s", name, bad)
			}
			baltest.Record(t, 18, fmt.Sprintf("%s %s: %d/%d ended ≤ %v (slowest %v), %d/%d as a reset (the rest EOF); bal sockets left %q; fds %d (warm baseline %d)",
				eng, name, ended, iters, bound, slowest.Round(time.Millisecond), resets, iters, bad, fds, base), pass)
		}
	})
}

type resetResult struct {
	took  time.Duration // reset → the other side's read ended
	reset bool          // it ended with ECONNRESET (else EOF)
	n     int64         // bytes the other side read in all
}

// resetOnce streams from one side to the other until the receiver has read
// 256 KiB, then resets the sending side and times the receiver's end.
func resetOnce(r *rig, fromBackend bool) (resetResult, error) {
	c, b, err := r.pipe()
	if err != nil {
		return resetResult{}, err
	}
	defer c.Close()
	defer b.Close()
	src, dst := c, b
	if fromBackend {
		src, dst = b, c
	}
	deadline := time.Now().Add(20 * time.Second)
	_ = src.SetDeadline(deadline)
	_ = dst.SetDeadline(deadline)
	go func() { _, _ = writeStream(src, 1800, 1<<40) }() // until the reset
	var got atomic.Int64
	var resetAt atomic.Int64
	ended := make(chan error, 1)
	go func() {
		buf := make([]byte, 32<<10)
		for {
			m, err := dst.Read(buf)
			got.Add(int64(m))
			if err != nil {
				ended <- err
				return
			}
		}
	}()
	for got.Load() < 256<<10 {
		select {
		case err := <-ended:
			return resetResult{}, fmt.Errorf("receiver ended after %d bytes before the reset: %w", got.Load(), err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	_ = src.SetLinger(0)
	resetAt.Store(time.Now().UnixNano())
	src.Close()
	err = <-ended
	res := resetResult{took: time.Since(time.Unix(0, resetAt.Load())), n: got.Load()}
	switch {
	case baltest.IsReset(err):
		res.reset = true
	case errors.Is(err, io.EOF):
	case isTimeout(err):
		return res, fmt.Errorf("the receiver never saw the end (%v)", err)
	default:
		return res, fmt.Errorf("receiver: %w", err)
	}
	return res, nil
}
