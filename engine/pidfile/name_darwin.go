package pidfile

import "golang.org/x/sys/unix"

// processName is the process's command name (truncated by the kernel to 16 bytes).
func processName(pid int) (string, error) {
	kp, err := unix.SysctlKinfoProc("kern.proc.pid", pid)
	if err != nil {
		return "", err
	}
	b := kp.Proc.P_comm[:]
	n := 0
	for n < len(b) && b[n] != 0 {
		n++
	}
	s := make([]byte, n)
	for i := range n {
		s[i] = byte(b[i])
	}
	return string(s), nil
}

// isZombie reports whether pid has exited and waits to be reaped by its
// parent.
func isZombie(pid int) bool {
	kp, err := unix.SysctlKinfoProc("kern.proc.pid", pid)
	if err != nil {
		return false
	}
	const szomb = 5 // SZOMB in <sys/proc.h>
	return kp.Proc.P_stat == szomb
}
