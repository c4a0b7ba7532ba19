//go:build linux

package datapath

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
	"github.com/bal-lb/bal/engine/enginetest"
)

// flow is one direction of a slow-reader connection.
type flow struct {
	written, read atomic.Int64
	slow          atomic.Bool // the reader reads 64 KiB/s
	corrupt       atomic.Bool
	err           atomic.Value
}

const slowRate = 64 << 10 // bytes per second

// pushStream writes stream seed to c as fast as c takes it until stop.
func (f *flow) pushStream(c net.Conn, seed uint64, stop <-chan struct{}) {
	src := enginetest.NewStream(seed, 1<<50)
	buf := make([]byte, 32<<10)
	for {
		select {
		case <-stop:
			return
		default:
		}
		_, _ = src.Read(buf)
		n, err := c.Write(buf)
		f.written.Add(int64(n))
		if err != nil {
			f.fail(err, stop)
			return
		}
	}
}

// pullStream reads c, checking every byte against stream seed, at slowRate
// while f.slow is set, else as fast as it can, until stop.
func (f *flow) pullStream(c net.Conn, seed uint64, stop <-chan struct{}) {
	want := enginetest.NewStream(seed, 1<<50)
	buf, exp := make([]byte, 32<<10), make([]byte, 32<<10)
	for {
		select {
		case <-stop:
			return
		default:
		}
		b := buf
		if f.slow.Load() {
			b = buf[:8<<10] // 8 KiB every 125 ms
		}
		n, err := c.Read(b)
		if n > 0 {
			_, _ = want.Read(exp[:n])
			if !bytes.Equal(b[:n], exp[:n]) {
				f.corrupt.Store(true)
			}
			f.read.Add(int64(n))
			if f.slow.Load() {
				time.Sleep(time.Duration(n) * time.Second / slowRate)
			}
		}
		if err != nil {
			f.fail(err, stop)
			return
		}
	}
}

func (f *flow) fail(err error, stop <-chan struct{}) {
	select {
	case <-stop: // ended by the test
	default:
		f.err.CompareAndSwap(nil, err)
	}
}

// TestSlowReaderBoundedMemory is research test 24: in a namespace whose
// tcp_rmem/tcp_wmem top out at 256 KiB, N connections where one side
// writes as fast as it can and the other reads 64 KiB/s (download, then
// upload). Every second: bal's RSS ≤ baseline + N × 256 KiB + 16 MiB and
// every connection's bytes written − bytes read ≤ 2 MiB (backpressure: bal
// stops reading a side whose peer does not read). Then the readers speed
// up: every connection must move 1 MiB more within 1 s, and every byte must
// be the right one (0 drops).
func TestSlowReaderBoundedMemory(t *testing.T) {
	conns := baltest.Pick(20, 50)
	slowFor := baltest.Pick(4*time.Second, 30*time.Second)
	resumeBound := baltest.Pick(5*time.Second, time.Second)
	baltest.NeedTools(t, "ip", "sysctl")
	baltest.ForEngine(t, func(t *testing.T, eng string) {
		ns := baltest.NetNS(t)
		baltest.Sysctl(t, ns, "net.ipv4.tcp_rmem", "4096 65536 262144")
		baltest.Sysctl(t, ns, "net.ipv4.tcp_wmem", "4096 65536 262144")
		r := newRig(t, eng, rigOptions{clientNS: ns, backendNS: ns, runtime: []string{"connection_idle_timeout_ms: 60000"}})
		warmUp(t, r, 4)
		baseRSS := r.bal.RSS()
		rssBound := baseRSS + int64(conns)*256 + 16<<10 // KiB
		for _, upload := range []bool{false, true} {
			name := "download"
			if upload {
				name = "upload"
			}
			flows := make([]*flow, conns)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for i := range flows {
				c, b := r.mustPipe()
				src, dst := b, c
				if upload {
					src, dst = c, b
				}
				f := &flow{}
				f.slow.Store(true)
				flows[i] = f
				seed := uint64(2400 + i)
				wg.Add(2)
				go func() { defer wg.Done(); f.pushStream(src, seed, stop) }()
				go func() { defer wg.Done(); f.pullStream(dst, seed, stop) }()
			}
			var maxRSS, maxFlight int64
			samples := 0
			began := time.Now()
			for time.Since(began) < slowFor {
				time.Sleep(time.Second)
				samples++
				maxRSS = max(maxRSS, r.bal.RSS())
				for _, f := range flows {
					maxFlight = max(maxFlight, f.written.Load()-f.read.Load())
				}
			}
			// The readers speed up: every connection moves 1 MiB more.
			marks := make([]int64, conns)
			for i, f := range flows {
				marks[i] = f.read.Load()
				f.slow.Store(false)
			}
			sped := time.Now()
			var resume time.Duration
			for {
				all := true
				for i, f := range flows {
					if f.read.Load()-marks[i] < 1<<20 {
						all = false
					}
				}
				if all {
					resume = time.Since(sped)
					break
				}
				if time.Since(sped) > 10*time.Second {
					resume = -1
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			close(stop)
			r.closeAll() // unblocks the writers and readers
			wg.Wait()
			r.forget()
			var corrupt, failed int
			var firstErr any
			for _, f := range flows {
				if f.corrupt.Load() {
					corrupt++
				}
				if e := f.err.Load(); e != nil {
					failed++
					firstErr = e
				}
			}
			if failed > 0 {
				t.Errorf("%s: %d connections failed, e.g. %v", name, failed, firstErr)
			}
			if _, ok := waitActive(r.bal, 0, 10*time.Second); !ok {
				t.Errorf("%s: connections still active after the run", name)
			}
			pass := maxRSS <= rssBound && maxFlight <= 2<<20 && resume >= 0 && resume <= resumeBound && corrupt == 0 && failed == 0
			baltest.Record(t, 24, fmt.Sprintf("%s %s: %d connections, reader 64 KiB/s for %v, tcp_rmem/wmem max 256 KiB: peak RSS %.1f MiB (baseline %.1f, bound %.1f) over %d samples, peak in flight %s per connection (bound 2 MiB); 1 MiB more on every connection %v after the readers sped up (bound %v); %d corrupt, %d failed",
				eng, name, conns, slowFor, float64(maxRSS)/1024, float64(baseRSS)/1024, float64(rssBound)/1024, samples,
				mib(maxFlight), resume.Round(time.Millisecond), resumeBound, corrupt, failed), pass)
		}
	})
}
