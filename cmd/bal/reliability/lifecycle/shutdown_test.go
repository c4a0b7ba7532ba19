package lifecycle_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
	"github.com/bal-lb/bal/engine/enginetest"
)

// Test 6: SIGTERM (then SIGINT, then `bal stop`) during a download and an
// upload through bal, each paced (soak: 10 MiB at 1 MiB/s, signal at 2 s;
// fast: 2 MiB at 2 MiB/s, signal at 300 ms), on both engines. Pass: both
// transfers byte-exact (SHA-256 of a seeded stream at the far end); a new
// connect 200 ms after the signal is refused (ECONNREFUSED) in < 100 ms;
// bal exits ≤ 1 s after the last connection ended, with code 0, and removes
// bal.pid and bal.sock.
func TestShutdownDuringTransfers(t *testing.T) {
	for _, eng := range baltest.Engines() {
		for _, how := range []string{"SIGTERM", "SIGINT", "bal stop"} {
			t.Run(eng+"/"+how, func(t *testing.T) { testShutdownDuringTransfers(t, eng, how) })
		}
	}
}

// pacedWrite writes the stream (seed, n) to w at rate bytes/s.
func pacedWrite(w io.Writer, seed uint64, n int64, rate int64) error {
	const chunk = 16 << 10
	s := enginetest.NewStream(seed, n)
	buf := make([]byte, chunk)
	start := time.Now()
	var sent int64
	for {
		k, err := s.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return werr
			}
			sent += int64(k)
			time.Sleep(time.Until(start.Add(time.Duration(sent * int64(time.Second) / rate))))
		}
		if err == io.EOF {
			return nil
		}
	}
}

// transferBackend serves 'D' (send the paced stream seedDown, then close)
// and 'U' (read to EOF, answer the SHA-256 and byte count, close).
func transferBackend(seedDown uint64, size, rate int64) func(*net.TCPConn) {
	return func(c *net.TCPConn) {
		mode := make([]byte, 1)
		if _, err := io.ReadFull(c, mode); err != nil {
			return
		}
		switch mode[0] {
		case 'D':
			_ = pacedWrite(c, seedDown, size, rate)
		case 'U':
			sum, n, err := enginetest.ReadAllSum(c)
			if err != nil {
				return
			}
			_, _ = c.Write(sum[:])
			_, _ = fmt.Fprintf(c, "%d", n)
		}
	}
}

type transfer struct {
	ok   bool
	err  error
	n    int64
	done time.Time
}

func download(addr string, seed uint64, size int64) transfer {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return transfer{err: err, done: time.Now()}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write([]byte{'D'}); err != nil {
		return transfer{err: err, done: time.Now()}
	}
	sum, n, err := enginetest.ReadAllSum(c)
	return transfer{ok: err == nil && n == size && sum == enginetest.StreamSum(seed, size), err: err, n: n, done: time.Now()}
}

func upload(addr string, seed uint64, size, rate int64) transfer {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return transfer{err: err, done: time.Now()}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write([]byte{'U'}); err != nil {
		return transfer{err: err, done: time.Now()}
	}
	if err := pacedWrite(c, seed, size, rate); err != nil {
		return transfer{err: err, done: time.Now()}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return transfer{err: err, done: time.Now()}
	}
	reply, err := io.ReadAll(c)
	want := enginetest.StreamSum(seed, size)
	ok := err == nil && len(reply) > 32 && string(reply[:32]) == string(want[:]) && string(reply[32:]) == fmt.Sprint(size)
	if err == nil && !ok {
		err = fmt.Errorf("backend got a different stream: reply %q", reply)
	}
	return transfer{ok: ok, err: err, n: size, done: time.Now()}
}

func testShutdownDuringTransfers(t *testing.T, eng, how string) {
	size := baltest.Pick(int64(2<<20), int64(10<<20))
	rate := baltest.Pick(int64(2<<20), int64(1<<20))
	signalAt := baltest.Pick(300*time.Millisecond, 2*time.Second)
	const seedDown, seedUp = 61, 62

	be := baltest.NewBackend(t, transferBackend(seedDown, size, rate))
	cfg := baltest.Config{Port: baltest.FreePort(t), Engine: eng, LogLevel: "info", Backends: []string{be.Addr()},
		Runtime: quietRuntime("drain_timeout_ms: 60000")}
	p := baltest.Start(t, cfg)
	pidPath := filepath.Join(p.Home, "bal.pid")
	sockPath := filepath.Join(p.Home, "bal.sock")
	if _, err := os.Stat(pidPath); err != nil {
		t.Fatalf("no pid file while running: %v", err)
	}

	var down, up transfer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); down = download(p.Addr(), seedDown, size) }()
	go func() { defer wg.Done(); up = upload(p.Addr(), seedUp, size, rate) }()
	time.Sleep(signalAt)

	signalled := time.Now()
	stopRes := make(chan baltest.Result, 1)
	switch how {
	case "SIGTERM":
		p.Signal(syscall.SIGTERM)
	case "SIGINT":
		p.Signal(syscall.SIGINT)
	case "bal stop":
		go func() { stopRes <- p.RunFor(2*time.Minute, "stop") }()
	}
	// A new connect 200 ms after the signal must be refused at once.
	time.Sleep(time.Until(signalled.Add(200 * time.Millisecond)))
	t0 := time.Now()
	c, dialErr := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
	dialTook := time.Since(t0)
	if c != nil {
		c.Close()
	}
	refused := errors.Is(dialErr, syscall.ECONNREFUSED)

	wg.Wait()
	lastEnd := down.done
	if up.done.After(lastEnd) {
		lastEnd = up.done
	}
	var exited time.Time
	select {
	case <-p.Done():
		exited = time.Now()
	case <-time.After(time.Until(lastEnd.Add(10 * time.Second))):
		t.Fatalf("bal still running 10 s after the last transfer ended")
	}
	code := p.Wait(time.Second)
	exitAfter := exited.Sub(lastEnd)
	_, pidErr := os.Lstat(pidPath)
	_, sockErr := os.Lstat(sockPath)
	filesGone := os.IsNotExist(pidErr) && os.IsNotExist(sockErr)
	stopOK := true
	stopNote := ""
	if how == "bal stop" {
		r := <-stopRes
		stopOK = r.Code == 0
		stopNote = fmt.Sprintf("; bal stop exit %d", r.Code)
	}
	if !down.ok || !up.ok {
		t.Errorf("download ok %v (%d bytes, %v); upload ok %v (%v)", down.ok, down.n, down.err, up.ok, up.err)
	}
	pass := down.ok && up.ok && refused && dialTook < 100*time.Millisecond && exitAfter <= time.Second && code == 0 && filesGone && stopOK
	baltest.Record(t, 6, fmt.Sprintf("%s, %s, %s: %d MiB down + %d MiB up at %d MiB/s, signal at %s: byte-exact down %v up %v; connect +200 ms: %v in %s; exit %s after the last transfer ended, code %d; pid file and socket removed %v%s",
		eng, how, variant(), size>>20, size>>20, rate>>20, ms(signalAt), down.ok, up.ok, errName(dialErr), ms(dialTook), ms(exitAfter), code, filesGone, stopNote), pass)
}

func errName(err error) string {
	switch {
	case err == nil:
		return "connected (not refused)"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "ECONNREFUSED"
	case errors.Is(err, syscall.ECONNRESET):
		return "ECONNRESET"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return err.Error()
}

// Test 7: the drain deadline. 100 silent proxied connections, idle timeout
// off (10 min), drain_timeout_ms D (soak 5000, fast 1500). Pass: after
// SIGTERM bal exits at D ± 1 s with code 0 and every client has seen EOF or
// a reset by then. A second SIGTERM 300 ms after the first (fresh instance,
// same 100 connections) makes bal exit ≤ 1 s later with code 1 (docs/design.md#shutdown),
// and so does a second `bal stop` after one that timed out.
func TestDrainDeadline(t *testing.T) {
	for _, eng := range baltest.Engines() {
		for _, how := range []string{"deadline", "second SIGTERM", "second bal stop"} {
			t.Run(eng+"/"+how, func(t *testing.T) { testDrainDeadline(t, eng, how) })
		}
	}
}

func testDrainDeadline(t *testing.T, eng, how string) {
	const conns = 100
	drain := baltest.Pick(1500*time.Millisecond, 5*time.Second)
	var active atomic.Int64
	be := baltest.NewBackend(t, func(c *net.TCPConn) {
		active.Add(1)
		defer active.Add(-1)
		_, _ = io.Copy(io.Discard, c)
	})
	cfg := baltest.Config{Port: baltest.FreePort(t), Engine: eng, LogLevel: "info", Backends: []string{be.Addr()},
		Runtime: quietRuntime(fmt.Sprintf("drain_timeout_ms: %d", drain.Milliseconds()), "connection_idle_timeout_ms: 600000")}
	p := baltest.Start(t, cfg)

	ends := make([]time.Time, conns)
	var endErrs [conns]error
	var wg sync.WaitGroup
	var cs []net.Conn
	for range conns {
		c, err := net.DialTimeout("tcp", p.Addr(), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
	}
	for deadline := time.Now().Add(5 * time.Second); active.Load() < conns; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d connections reached the backend", active.Load(), conns)
		}
	}
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(drain + 10*time.Second))
			_, err := c.Read(make([]byte, 1))
			ends[i], endErrs[i] = time.Now(), err
		}()
	}

	start := time.Now()
	var second time.Time
	var stopCodes []int
	switch how {
	case "deadline":
		p.Signal(syscall.SIGTERM)
	case "second SIGTERM":
		p.Signal(syscall.SIGTERM)
		time.Sleep(300 * time.Millisecond)
		second = time.Now()
		p.Signal(syscall.SIGTERM)
	case "second bal stop":
		r := p.RunFor(10*time.Second, "stop", "--timeout", "300ms") // times out: still draining
		stopCodes = append(stopCodes, r.Code)
		second = time.Now()
		r = p.RunFor(10*time.Second, "stop")
		stopCodes = append(stopCodes, r.Code)
	}
	var exited time.Time
	select {
	case <-p.Done():
		exited = time.Now()
	case <-time.After(drain + 10*time.Second):
		t.Fatalf("bal still running %v after SIGTERM", drain+10*time.Second)
	}
	code := p.Wait(time.Second)
	wg.Wait()
	var late, unended int
	var lastEnd time.Time
	for i := range ends {
		var ne net.Error
		if errors.As(endErrs[i], &ne) && ne.Timeout() {
			unended++
		}
		if ends[i].After(lastEnd) {
			lastEnd = ends[i]
		}
		if ends[i].After(exited.Add(200 * time.Millisecond)) {
			late++
		}
	}
	exitAfter := exited.Sub(start)
	var pass bool
	var figure string
	switch how {
	case "deadline":
		off := exitAfter - drain
		pass = off >= -time.Second && off <= time.Second && code == 0 && unended == 0 && late == 0
		figure = fmt.Sprintf("%s, %s: %d silent conns, drain_timeout_ms %d: exit after %s (D%+d ms), code %d; clients ended by then %d/%d (last %s after SIGTERM)",
			eng, variant(), conns, drain.Milliseconds(), ms(exitAfter), off.Milliseconds(), code, conns-unended-late, conns, ms(lastEnd.Sub(start)))
	default:
		after := exited.Sub(second)
		pass = after <= time.Second && code == 1 && unended == 0 && late == 0
		if how == "second bal stop" {
			pass = pass && len(stopCodes) == 2 && stopCodes[0] == 1 && stopCodes[1] == 0
		}
		figure = fmt.Sprintf("%s, %s, %s: %d silent conns, drain_timeout_ms %d: exit %s after the second request, code %d; clients ended %d/%d; bal stop codes %v",
			eng, how, variant(), conns, drain.Milliseconds(), ms(after), code, conns-unended-late, conns, stopCodes)
	}
	baltest.Record(t, 7, figure, pass)
}
