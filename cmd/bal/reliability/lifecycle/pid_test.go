package lifecycle_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// userHome prepares, for a bal run as uid:gid, a config directory others
// can traverse and a BAL_HOME owned by that user (mode 0700).
func userHome(t *testing.T, uid, gid int) string {
	t.Helper()
	binReachable(t)
	home := filepath.Join(baltest.SharedTempDir(t), "home")
	baltest.MkdirAs(t, home, 0o700, uid, gid)
	return home
}

// Test 8: start/stop/PID-file lifecycle as a non-root user (uid 65534).
// Pass, each exactly: a second `bal start` (foreground and -d) exits ≠ 0
// saying bal is already running, and the first keeps serving; after
// kill -9 a new start succeeds within 1 s (stale pid file and socket
// replaced); with the PID of an unrelated live process of the same user in
// the pid file — a sleep, and another bal serving another BAL_HOME — `bal
// stop` signals neither (both alive 2 s later) and exits ≠ 0; `bal status`
// on a stopped instance exits 3.
func TestPidLifecycle(t *testing.T) {
	baltest.NeedRoot(t)
	const uid = baltest.Nobody
	home := userHome(t, uid, uid)
	be := baltest.NewBackend(t, baltest.Name("a"))
	cfg := baltest.Config{Port: baltest.FreePort(t), LogLevel: "info", Backends: []string{be.Addr()}, Runtime: quietRuntime()}
	as := []baltest.Option{baltest.AsUser(uid, uid), baltest.Home(home)}
	p := baltest.Start(t, cfg, as...)
	if got := baltest.UIDOf(t, p.PID()); got != uid {
		t.Fatalf("bal runs as uid %d, want %d", got, uid)
	}
	pidPath := filepath.Join(home, "bal.pid")
	var notes []string
	pass := true
	fail := func(format string, args ...any) {
		pass = false
		t.Errorf(format, args...)
	}

	// A second start, foreground and daemon.
	for _, args := range [][]string{{"start", "-c", p.ConfigPath}, {"start", "-d", "-c", p.ConfigPath}} {
		r := p.RunFor(15*time.Second, args...)
		if r.Code == 0 || r.TimedOut || !strings.Contains(r.Stderr, "already running") {
			fail("second %v: exit %d (timed out %v), stderr %q", args, r.Code, r.TimedOut, r.Stderr)
		}
		if name, err := baltest.Who(p.Addr()); err != nil || name != "a" || !baltest.Alive(p.PID()) {
			fail("first instance after a second %v: %q %v", args, name, err)
		}
		notes = append(notes, fmt.Sprintf("second %s: exit %d %q", strings.Join(args[:len(args)-2], " "), r.Code, clip(r.Stderr)))
	}

	// kill -9, then start again at once: the stale pid file and control
	// socket are replaced.
	p.Signal(syscall.SIGKILL)
	<-p.Done()
	_, pidErr := os.Lstat(pidPath)
	_, sockErr := os.Lstat(filepath.Join(home, "bal.sock"))
	t0 := time.Now()
	p2 := baltest.Start(t, cfg, as...)
	restart := time.Since(t0)
	if restart > time.Second {
		fail("start after kill -9 took %v", restart)
	}
	if name, err := baltest.Who(p2.Addr()); err != nil || name != "a" {
		fail("after the restart: %q %v", name, err)
	}
	notes = append(notes, fmt.Sprintf("start after kill -9 (stale pid file left %v, socket left %v): serving in %s", pidErr == nil, sockErr == nil, ms(restart)))
	if code := p2.Stop(10 * time.Second); code != 0 {
		fail("stop after the restart: exit %d", code)
	}

	// Status of a stopped instance.
	r := baltest.Runner{Home: home, UID: uid, GID: uid}
	if st := r.Run(t, 10*time.Second, "status"); st.Code != 3 {
		fail("status of a stopped instance: exit %d, want 3\n%s", st.Code, st.Stdout)
	} else {
		notes = append(notes, "status when stopped: exit 3")
	}

	// A pid file naming an unrelated process of the same user.
	sleeper := baltest.StartAs(t, uid, uid, "sleep", "300")
	otherHome := userHome(t, uid, uid)
	q := baltest.Start(t, cfg2(t, be), baltest.AsUser(uid, uid), baltest.Home(otherHome))
	for _, victim := range []struct {
		name string
		pid  int
	}{{"sleep", sleeper.Process.Pid}, {"another bal (other BAL_HOME)", q.PID()}} {
		baltest.WriteFileAs(t, pidPath, strconv.Itoa(victim.pid)+"\n", 0o644, uid, uid)
		res := r.Run(t, 15*time.Second, "stop")
		time.Sleep(2 * time.Second)
		alive := baltest.Alive(victim.pid)
		if res.Code == 0 || !alive {
			fail("pid file naming %s (PID %d): bal stop exit %d, %s; victim alive 2 s later: %v", victim.name, victim.pid, res.Code, clip(res.Stdout+res.Stderr), alive)
		}
		notes = append(notes, fmt.Sprintf("pid file naming %s: bal stop exit %d, victim alive 2 s later %v", victim.name, res.Code, alive))
		if st := r.Run(t, 10*time.Second, "status"); st.Code != 3 {
			fail("status with a pid file naming %s: exit %d, want 3", victim.name, st.Code)
		}
	}
	if name, err := baltest.Who(q.Addr()); err != nil || name != "a" {
		fail("the other bal stopped serving: %q %v", name, err)
	}
	baltest.Record(t, 8, fmt.Sprintf("as uid %d: %s", uid, strings.Join(notes, "; ")), pass)
}

// cfg2 is a second instance's config on its own port.
func cfg2(t *testing.T, be *baltest.Backend) baltest.Config {
	return baltest.Config{Port: baltest.FreePort(t), LogLevel: "info", Backends: []string{be.Addr()}, Runtime: quietRuntime()}
}
