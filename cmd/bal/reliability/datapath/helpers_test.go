//go:build linux

package datapath

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
	"github.com/bal-lb/bal/engine/enginetest"
)

// rigOptions shape a rig.
type rigOptions struct {
	runtime   []string // extra runtime lines (after QuietHealth)
	clientNS  string   // bal and the clients run here ("" = this namespace)
	backendNS string   // the backend listens here ("" = this namespace)
	backendIP string   // the backend's listen address (default 127.0.0.1)
	extra     []baltest.Option
}

// rig is one bal in front of one backend listener whose accepted
// connections are handed to the test, so that the test drives both ends of
// every proxied connection. Health checks are quiet after the first round,
// so with connections opened one at a time the n-th accept is the n-th
// client's.
type rig struct {
	t       *testing.T
	eng     string
	bal     *baltest.Proc
	ln      *net.TCPListener
	backend string // "ip:port" of the listener
	opts    rigOptions

	acc chan *net.TCPConn

	mu    sync.Mutex
	conns []*net.TCPConn
}

func newRig(t *testing.T, eng string, o rigOptions) *rig {
	t.Helper()
	r := &rig{t: t, eng: eng, opts: o, acc: make(chan *net.TCPConn, 4096)}
	ip := o.backendIP
	if ip == "" {
		ip = "127.0.0.1"
	}
	listen := func() error {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return err
		}
		r.ln = ln.(*net.TCPListener)
		return nil
	}
	var err error
	if o.backendNS != "" {
		err = baltest.NSDo(o.backendNS, listen)
	} else {
		err = listen()
	}
	if err != nil {
		t.Fatalf("backend listen: %v", err)
	}
	r.backend = r.ln.Addr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := r.ln.AcceptTCP()
			if err != nil {
				return
			}
			r.track(c)
			select {
			case r.acc <- c:
			default:
				c.Close() // nobody will ever take it
			}
		}
	}()
	t.Cleanup(func() {
		r.ln.Close()
		<-done
		r.closeAll()
	})
	cfg := baltest.Config{
		Port:     baltest.FreePort(t),
		Engine:   eng,
		LogLevel: "info",
		Backends: []string{r.backend},
		Runtime:  append(append(baltest.QuietHealth(), "backend_connect_timeout_ms: 2000"), o.runtime...),
	}
	opts := o.extra
	if o.clientNS != "" {
		opts = append(opts, baltest.InNetNS(o.clientNS))
		// FreePort looked in this namespace; any port is free in a new one.
	}
	r.bal = baltest.Start(t, cfg, opts...)
	r.bal.WaitHealthRound(10 * time.Second)
	// The start-up health check's connection: take it out of the queue.
	select {
	case c := <-r.acc:
		c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the start-up health check never reached the backend")
	}
	return r
}

func (r *rig) track(c *net.TCPConn) {
	r.mu.Lock()
	r.conns = append(r.conns, c)
	r.mu.Unlock()
}

func (r *rig) closeAll() {
	r.mu.Lock()
	cs := r.conns
	r.conns = nil
	r.mu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// forget drops references to closed connections (long runs).
func (r *rig) forget() {
	r.mu.Lock()
	r.conns = nil
	r.mu.Unlock()
}

// dial connects a client to bal (from the client namespace).
func (r *rig) dial() (*net.TCPConn, error) {
	var c net.Conn
	d := func() (err error) {
		c, err = net.DialTimeout("tcp", r.bal.Addr(), 5*time.Second)
		return err
	}
	var err error
	if r.opts.clientNS != "" {
		err = baltest.NSDo(r.opts.clientNS, d)
	} else {
		err = d()
	}
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	r.track(tc)
	return tc, nil
}

// pipe opens one proxied connection and returns its two ends: the client's
// socket and the backend's accepted socket. Calls must not overlap.
func (r *rig) pipe() (client, backend *net.TCPConn, err error) {
	c, err := r.dial()
	if err != nil {
		return nil, nil, fmt.Errorf("dial bal: %w", err)
	}
	select {
	case b := <-r.acc:
		return c, b, nil
	case <-time.After(5 * time.Second):
		c.Close()
		return nil, nil, errors.New("bal never connected to the backend")
	}
}

// mustPipe is pipe that fails the test.
func (r *rig) mustPipe() (client, backend *net.TCPConn) {
	r.t.Helper()
	c, b, err := r.pipe()
	if err != nil {
		r.t.Fatal(err)
	}
	return c, b
}

// badStates returns bal's sockets in states that must not linger once its
// connections are over (ESTABLISHED, CLOSE_WAIT, FIN_WAIT1/2, LAST_ACK,
// CLOSING), as "STATE=n" strings; "" when none.
func (r *rig) badStates() string {
	st := r.bal.BalSocketStates(r.backend)
	var bad []string
	for s, n := range st {
		switch s {
		case "TIME_WAIT", "CLOSE":
			continue
		}
		bad = append(bad, fmt.Sprintf("%s=%d", s, n))
	}
	sort.Strings(bad)
	return strings.Join(bad, " ")
}

// waitQuiet waits up to timeout for bal to hold no connection socket in a
// lingering state and returns what is left ("" when quiet) and when the
// check that found it quiet began (relative to the call).
func (r *rig) waitQuiet(timeout time.Duration) (string, time.Duration) {
	began := time.Now()
	for {
		at := time.Since(began)
		bad := r.badStates()
		if bad == "" || at > timeout {
			return bad, at
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// fdsBack reports whether bal's descriptors are back to the baseline: at
// most base+2. Fewer is no leak: the engines pool pipes (gnet per loop, the
// Go runtime for the std engine's splice) and a garbage collection may
// release pooled ones below a warmed-up baseline.
func fdsBack(base, now int) bool { return now <= base+2 }

// activeConns is bal's active_connections from status.
func activeConns(p *baltest.Proc) int {
	v, _ := p.Status()["active_connections"].(float64)
	return int(v)
}

// goroutines is the daemon's goroutine count from status.
func goroutines(p *baltest.Proc) int {
	v, _ := p.Status()["goroutines"].(float64)
	return int(v)
}

// relayed is bal's byte counters from status (client→backend, backend→client).
func relayed(p *baltest.Proc) (up, down int64) {
	b, _ := p.Status()["bytes"].(map[string]any)
	u, _ := b["client_to_backend"].(float64)
	d, _ := b["backend_to_client"].(float64)
	return int64(u), int64(d)
}

// waitActive waits until bal reports want active connections.
func waitActive(p *baltest.Proc, want int, timeout time.Duration) (int, bool) {
	deadline := time.Now().Add(timeout)
	for {
		n := activeConns(p)
		if n == want {
			return n, true
		}
		if time.Now().After(deadline) {
			return n, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// warmUp runs n proxied connections at once through a few rounds of small
// writes both ways, closes them and returns bal's descriptor count once they
// are gone: the baseline "after warm-up" of the research, with the engines'
// pipe pools holding what n concurrent relays use.
func warmUp(t *testing.T, r *rig, n int) int {
	t.Helper()
	type pr struct{ c, b *net.TCPConn }
	ps := make([]pr, n)
	for i := range ps {
		ps[i].c, ps[i].b = r.mustPipe()
	}
	var wg sync.WaitGroup
	for round := range 3 {
		for _, p := range ps {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = p.c.SetDeadline(time.Now().Add(10 * time.Second))
				_ = p.b.SetDeadline(time.Now().Add(10 * time.Second))
				one := []byte{byte(round)}
				if _, err := p.c.Write(one); err == nil {
					_, _ = io.ReadFull(p.b, one)
				}
				if _, err := p.b.Write(one); err == nil {
					_, _ = io.ReadFull(p.c, one)
				}
			}()
		}
		wg.Wait()
	}
	for _, p := range ps {
		p.c.Close()
		p.b.Close()
	}
	r.forget()
	if n, ok := waitActive(r.bal, 0, 10*time.Second); !ok {
		t.Fatalf("warm-up: %d connections still active", n)
	}
	time.Sleep(200 * time.Millisecond)
	return r.bal.FDs()
}

// ---- streams ----

var sums sync.Map // [2]int64{seed, n} → [32]byte

// streamSum is enginetest.StreamSum, cached.
func streamSum(seed uint64, n int64) [32]byte {
	k := [2]int64{int64(seed), n}
	if v, ok := sums.Load(k); ok {
		return v.([32]byte)
	}
	s := enginetest.StreamSum(seed, n)
	sums.Store(k, s)
	return s
}

// received is what a reader got.
type received struct {
	n      int64
	sum    [32]byte
	err    error
	lastAt time.Time // when the byte completing want arrived
	eofAt  time.Time
}

// readStream reads c to EOF, hashing, and notes when byte number want
// arrived. first is closed at the first byte or at the end, whichever comes
// first.
func readStream(c net.Conn, want int64, first chan<- struct{}) received {
	var once sync.Once
	signal := func() {
		if first != nil {
			once.Do(func() { close(first) })
		}
	}
	defer signal()
	var r received
	h := newHasher()
	buf := make([]byte, 64<<10)
	for {
		m, err := c.Read(buf)
		if m > 0 {
			signal()
			h.Write(buf[:m])
			r.n += int64(m)
			if r.n >= want && r.lastAt.IsZero() {
				r.lastAt = time.Now()
			}
		}
		if err == io.EOF {
			r.eofAt = time.Now()
			if r.lastAt.IsZero() {
				r.lastAt = r.eofAt
			}
			break
		}
		if err != nil {
			r.err = err
			break
		}
	}
	r.sum = h.sum()
	return r
}

// writeStream writes n bytes of stream seed to c and returns when the last
// write returned.
func writeStream(c net.Conn, seed uint64, n int64) (time.Time, error) {
	buf := make([]byte, 64<<10)
	src := enginetest.NewStream(seed, n)
	for {
		m, err := src.Read(buf)
		if m > 0 {
			if _, werr := c.Write(buf[:m]); werr != nil {
				return time.Now(), werr
			}
		}
		if err != nil {
			break
		}
	}
	return time.Now(), nil
}

// isTimeout reports a deadline error.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// mib formats bytes as MiB.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

type hasher struct{ h hash.Hash }

func newHasher() hasher            { return hasher{sha256.New()} }
func (h hasher) Write(p []byte)    { h.h.Write(p) }
func (h hasher) sum() (s [32]byte) { copy(s[:], h.h.Sum(nil)); return s }

// jsonUnmarshal decodes s into v.
func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
