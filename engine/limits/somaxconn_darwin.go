package limits

import "golang.org/x/sys/unix"

// Somaxconn is the kernel's cap on a listen(2) backlog (kern.ipc.somaxconn).
func Somaxconn() (int, error) {
	n, err := unix.SysctlUint32("kern.ipc.somaxconn")
	if err != nil {
		return 0, err
	}
	return int(n), nil
}
