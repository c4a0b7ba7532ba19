package stdengine

import "golang.org/x/sys/unix"

// inQueue is the number of bytes queued for reading on socket fd (SIOCINQ),
// 0 when unknown.
func inQueue(fd int) int {
	n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	if err != nil {
		return 0
	}
	return n
}
