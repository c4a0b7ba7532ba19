package main

import "golang.org/x/sys/unix"

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
