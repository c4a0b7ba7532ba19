package limits

import (
	"errors"
	"runtime"

	"golang.org/x/sys/unix"
)

// ErrUnsupported: the limit cannot be read on this system.
var ErrUnsupported = errors.New("limit not available on this system")

// Reserve is the number of descriptors a process needs besides its
// connections: listeners, pollers, the control socket, the log file, health
// checks and DNS lookups in flight.
const Reserve = 64

// NoFile returns RLIMIT_NOFILE of this process. (Go raises the soft limit to
// the hard limit at start-up, so in bal both are normally equal.)
func NoFile() (soft, hard uint64, err error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, err
	}
	return uint64(rl.Cur), uint64(rl.Max), nil
}

// FDsPerConn is how many descriptors one proxied connection holds on an
// engine: the client and backend sockets, plus, for the std engine on Linux,
// the two pipes (four descriptors) the Go runtime keeps for splice(2) while a
// direction is copying. The gnet engine takes pipes from a small per-loop
// pool only while bytes are in flight.
func FDsPerConn(engine string) int {
	if engine == "std" && runtime.GOOS == "linux" {
		return 6
	}
	return 2
}

// Needed is the RLIMIT_NOFILE that maxConns connections on engine need.
func Needed(maxConns int, engine string) uint64 {
	if maxConns < 0 {
		maxConns = 0
	}
	return uint64(maxConns)*uint64(FDsPerConn(engine)) + Reserve
}
