//go:build linux

package datapath

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// readPaced reads c to EOF at about rate bytes per second, hashing.
func readPaced(c net.Conn, want int64, rate int64) received {
	var r received
	h := newHasher()
	buf := make([]byte, 16<<10)
	began := time.Now()
	for {
		m, err := c.Read(buf)
		if m > 0 {
			h.Write(buf[:m])
			r.n += int64(m)
			if r.n >= want && r.lastAt.IsZero() {
				r.lastAt = time.Now()
			}
			if ahead := time.Duration(r.n*int64(time.Second)/rate) - time.Since(began); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				r.eofAt = time.Now()
			} else {
				r.err = err
			}
			break
		}
	}
	r.sum = h.sum()
	return r
}

// TestTailFlush is research test 17: the sender writes everything and
// closes at once (a full close, not a half-close) while the receiver reads
// at 1 MiB/s; every byte must still arrive, then EOF. Download: the backend
// sends; upload: the client sends.
func TestTailFlush(t *testing.T) {
	size := baltest.Pick(int64(2<<20), int64(8<<20))
	runs := baltest.Pick(4, 100)
	batch := baltest.Pick(4, 10)
	const rate = 1 << 20
	baltest.ForEngine(t, func(t *testing.T, eng string) {
		r := newRig(t, eng, rigOptions{runtime: []string{"connection_idle_timeout_ms: 30000"}})
		for _, upload := range []bool{false, true} {
			name := "download"
			if upload {
				name = "upload"
			}
			ok := 0
			var slowest, lastClose time.Duration
			for done := 0; done < runs; done += batch {
				n := min(batch, runs-done)
				type pair struct{ c, b *net.TCPConn }
				ps := make([]pair, 0, n)
				for range n {
					c, b := r.mustPipe()
					ps = append(ps, pair{c, b})
				}
				var wg sync.WaitGroup
				var mu sync.Mutex
				for i, p := range ps {
					wg.Add(1)
					go func() {
						defer wg.Done()
						src, dst := p.b, p.c
						if upload {
							src, dst = p.c, p.b
						}
						deadline := time.Now().Add(time.Duration(size/rate)*time.Second + 30*time.Second)
						_ = src.SetDeadline(deadline)
						_ = dst.SetDeadline(deadline)
						began := time.Now()
						closed := make(chan time.Duration, 1)
						go func() {
							_, _ = writeStream(src, uint64(1700+i), size)
							src.Close() // at once: what is in flight is bal's to deliver
							closed <- time.Since(began)
						}()
						got := readPaced(dst, size, rate)
						dst.Close()
						took := time.Since(began)
						closedAfter := <-closed
						mu.Lock()
						defer mu.Unlock()
						switch {
						case got.err != nil:
							t.Errorf("%s %d: %d bytes, then %v", name, done+i, got.n, got.err)
						case got.n != size || got.sum != streamSum(uint64(1700+i), size):
							t.Errorf("%s %d: %d bytes (exact %v), want %d then EOF", name, done+i, got.n,
								got.sum == streamSum(uint64(1700+i), size), size)
						default:
							ok++
							slowest = max(slowest, took)
							lastClose = max(lastClose, closedAfter)
						}
					}()
				}
				wg.Wait()
				r.forget()
			}
			baltest.Record(t, 17, fmt.Sprintf("%s %s: %d/%d runs delivered all %s then EOF (reader 1 MiB/s, %d at a time; senders closed ≤ %v after starting, readers done ≤ %v)",
				eng, name, ok, runs, mib(size), batch, lastClose.Round(10*time.Millisecond), slowest.Round(10*time.Millisecond)), ok == runs)
		}
	})
}
