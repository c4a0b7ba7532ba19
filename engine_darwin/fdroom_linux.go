package stdengine

import (
	"golang.org/x/sys/unix"

	"github.com/bal-lb/bal/engine/limits"
)

// pairFDs is the most descriptors one connection holds here: two sockets,
// plus the pipe pair the Go runtime keeps for splice(2) in each direction
// while bytes move.
const pairFDs = 6

// nofileLimit is this process's RLIMIT_NOFILE soft limit (0 when unknown).
func nofileLimit() int64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return int64(min(rl.Cur, 1<<40))
}

// openFDs counts the process's open descriptors (-1 when unknown).
func openFDs() int64 { return limits.OpenFDs() }
