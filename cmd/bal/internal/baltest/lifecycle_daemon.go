package baltest

import (
	"os"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"
)

var daemonPID = regexp.MustCompile(`daemon started \(PID (\d+)\)`)

// StartDaemon runs `bal start -d -c cfgPath` with r and returns its result
// and the daemon's PID (0 when it did not start). The cleanup SIGKILLs the
// daemon if it still runs (it is not the test's child: it is found by the
// PID start -d printed, and only killed while that PID still runs bal).
func StartDaemon(t testing.TB, r Runner, cfgPath string, timeout time.Duration) (Result, int) {
	t.Helper()
	res := r.Run(t, timeout, "start", "-d", "-c", cfgPath)
	pid := 0
	if m := daemonPID.FindStringSubmatch(res.Stdout); m != nil {
		pid, _ = strconv.Atoi(m[1])
	}
	if pid > 0 {
		t.Cleanup(func() { KillBal(pid) })
	}
	return res, pid
}

// KillBal SIGKILLs pid if it still runs the bal binary under test, and
// waits up to 5 s for it to be gone.
func KillBal(pid int) {
	if !IsBalBin(pid) {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for deadline := time.Now().Add(5 * time.Second); Alive(pid) && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
}

// IsBalBin reports whether pid runs the bal binary this test built.
func IsBalBin(pid int) bool {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	return err == nil && exe == Bin && Alive(pid)
}

// WaitGone waits up to timeout for pid to exit; it reports whether it did.
func WaitGone(pid int, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if !Alive(pid) {
			return true
		}
	}
	return !Alive(pid)
}
