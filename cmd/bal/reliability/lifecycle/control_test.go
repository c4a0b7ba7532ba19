package lifecycle_test

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// Test 28: the control channel ($BAL_HOME/bal.sock, HTTP over a unix
// socket). bal runs as uid 65534; uid 65533 plays another local user.
// Pass: bal.sock is 0600 in a 0700 BAL_HOME; the other user's connect
// fails with EACCES, and once the modes are loosened (home 0755, socket
// 0666) it connects but is refused by the peer-credential check (no
// answer, logged), and its `bal stop` fails without touching bal. Then
// 60 s (fast: 5 s) of attack — garbage, a 10 MiB header, a 10 MiB body,
// requests that stall half-sent (header and body), connections that send
// nothing, or go idle after a request — while a legitimate client asks GET /status every 50 ms: 0
// panics, bal alive, every bad client dropped ≤ 1 s after it connected
// (each sends its bytes at once), every legitimate status answered in
// < 100 ms.
func TestControlChannel(t *testing.T) {
	baltest.NeedRoot(t)
	const uid, other = baltest.Nobody, baltest.Other
	home := userHome(t, uid, uid)
	be := baltest.NewBackend(t, baltest.Name("a"))
	p := baltest.Start(t, baltest.Config{Port: baltest.FreePort(t), LogLevel: "info", Backends: []string{be.Addr()}, Runtime: quietRuntime()},
		baltest.AsUser(uid, uid), baltest.Home(home))
	sock := filepath.Join(home, "bal.sock")
	helper := helperBinary(t)
	var notes []string
	pass := true
	fail := func(format string, args ...any) {
		pass = false
		t.Errorf(format, args...)
	}

	modes := fileModes(home)
	if modes["."] != "0700" || modes["bal.sock"] != "0600" {
		fail("modes %v: want BAL_HOME 0700 and bal.sock 0600", modes)
	}
	denied := dialAs(t, helper, other, other, sock)
	if denied.Errno != "EACCES" {
		fail("uid %d connecting: %+v, want EACCES", other, denied)
	}
	notes = append(notes, fmt.Sprintf("modes home %s sock %s; uid %d connect: %s", modes["."], modes["bal.sock"], other, denied.Errno))

	// Loosen the modes: the peer-credential check still refuses.
	for path, mode := range map[string]os.FileMode{home: 0o755, sock: 0o666} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	from := p.LogCount()
	refused := dialAs(t, helper, other, other, sock)
	logged := p.WaitLog(from, "control: refusing a peer of another user", map[string]string{"uid": fmt.Sprint(other)}, 2*time.Second)
	stop := baltest.Runner{Home: home, UID: other, GID: other}.Run(t, 15*time.Second, "stop")
	time.Sleep(200 * time.Millisecond)
	if refused.Err != "" || refused.Answered || logged.Msg == "" {
		fail("uid %d with loosened modes: %+v (want connected, no answer), logged %v", other, refused, logged.Msg != "")
	}
	if stop.Code == 0 || !baltest.Alive(p.PID()) {
		fail("bal stop as uid %d: exit %d %q; bal alive %v", other, stop.Code, stop.Stderr, baltest.Alive(p.PID()))
	}
	notes = append(notes, fmt.Sprintf("loosened (0755/0666): uid %d connected, answered %v, refusal logged; its bal stop exit %d (%s), bal alive",
		other, refused.Answered, stop.Code, clip(strings.TrimSpace(stop.Stderr))))
	for path, mode := range map[string]os.FileMode{home: 0o700, sock: 0o600} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}

	// The attack, from this (root) process: past the peer check.
	dur := baltest.Pick(5*time.Second, 60*time.Second)
	stopAttack := make(chan struct{})
	var mu sync.Mutex
	drops := map[string][]time.Duration{}
	note := func(kind string, d time.Duration) {
		mu.Lock()
		drops[kind] = append(drops[kind], d)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	attacker := func(kind string, one func(r *rand.Rand) (time.Duration, bool)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(len(kind)), 28))
			for {
				select {
				case <-stopAttack:
					return
				default:
				}
				if d, ok := one(r); ok {
					note(kind, d)
				}
				time.Sleep(2 * time.Millisecond) // a flood, not a CPU hog on this shared machine
			}
		}()
	}
	attacker("garbage", func(r *rand.Rand) (time.Duration, bool) {
		buf := make([]byte, 4<<10)
		for i := range buf {
			buf[i] = byte(r.IntN(256))
			if r.IntN(40) == 0 {
				buf[i] = '\n'
			}
		}
		return sendThenWait(sock, buf)
	})
	bigHeader := append([]byte("GET /status HTTP/1.1\r\nHost: bal\r\nX-Big: "), make([]byte, 10<<20)...)
	bigBody := append([]byte("POST /reload HTTP/1.1\r\nHost: bal\r\nContent-Length: 10485760\r\n\r\n"), make([]byte, 10<<20)...)
	attacker("10 MiB header", func(*rand.Rand) (time.Duration, bool) { return sendThenWait(sock, bigHeader) })
	attacker("10 MiB body", func(*rand.Rand) (time.Duration, bool) { return sendThenWait(sock, bigBody) })
	attacker("stalled header", func(*rand.Rand) (time.Duration, bool) {
		return sendThenWait(sock, []byte("GET /status HTTP/1.1\r\nHost: ba"))
	})
	attacker("stalled body", func(*rand.Rand) (time.Duration, bool) {
		return sendThenWait(sock, []byte("POST /reload HTTP/1.1\r\nHost: bal\r\nContent-Length: 100\r\n\r\n0123456789"))
	})
	attacker("silent", func(*rand.Rand) (time.Duration, bool) {
		return sendThenWait(sock, nil)
	})
	attacker("idle after a request", func(*rand.Rand) (time.Duration, bool) {
		return sendThenWait(sock, []byte("GET /status HTTP/1.1\r\nHost: bal\r\n\r\n"))
	})

	ctl := baltest.NewControl(home)
	defer ctl.Close()
	var lat []time.Duration
	var statusErrs []string
	end := time.Now().Add(dur)
	for time.Now().Before(end) {
		t0 := time.Now()
		if _, err := ctl.Status(); err != nil {
			statusErrs = append(statusErrs, err.Error())
		}
		lat = append(lat, time.Since(t0))
		time.Sleep(50 * time.Millisecond)
	}
	close(stopAttack)
	wg.Wait()

	alive := baltest.Alive(p.PID())
	panics := strings.Count(p.RawLog(), "panic")
	slices.Sort(lat)
	worst := lat[len(lat)-1]
	median := lat[len(lat)/2]
	var kinds []string
	slow := 0
	for _, k := range []string{"garbage", "10 MiB header", "10 MiB body", "stalled header", "stalled body", "silent", "idle after a request"} {
		ds := drops[k]
		if len(ds) == 0 {
			fail("attack %q never completed a connection", k)
			continue
		}
		slices.Sort(ds)
		if ds[len(ds)-1] > time.Second {
			slow++
			fail("attack %q: a client was held its connection %v", k, ds[len(ds)-1])
		}
		kinds = append(kinds, fmt.Sprintf("%s %d× (dropped ≤ %s)", k, len(ds), ms(ds[len(ds)-1])))
	}
	if !alive || panics > 0 || len(statusErrs) > 0 || worst >= 100*time.Millisecond {
		fail("alive %v, panics %d, status errors %v, status latency max %v", alive, panics, statusErrs, worst)
	}
	if _, err := ctl.Status(); err != nil {
		fail("status after the attack: %v", err)
	}
	notes = append(notes, fmt.Sprintf("%s attack (%s): 0 panics %v, alive %v; %d legit status answered, median %s, max %s, errors %d",
		dur, strings.Join(kinds, ", "), panics == 0, alive, len(lat), ms(median), ms(worst), len(statusErrs)))
	baltest.Record(t, 28, variant()+": "+strings.Join(notes, "; "), pass)
}

// sendThenWait connects to the unix socket, writes msg (stopping at the
// first write error: the server may drop it mid-way), then waits for the
// server to close. It returns the time from the connect to the close (the
// messages are sent at once: that is how long the server let the client
// hold the connection), and false when nothing could be measured.
func sendThenWait(sock string, msg []byte) (time.Duration, bool) {
	c, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		time.Sleep(10 * time.Millisecond)
		return 0, false
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	for off := 0; off < len(msg); {
		n, err := c.Write(msg[off:min(len(msg), off+64<<10)])
		off += n
		if err != nil {
			break
		}
	}
	_, err = io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return 10 * time.Second, true
	}
	return time.Since(start), true
}
