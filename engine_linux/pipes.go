//go:build linux

package gnetengine

import (
	"os"

	"golang.org/x/sys/unix"
)

// ---- pipes ----

// pipeSize is the capacity asked for every pipe: the most bytes in flight
// per direction (docs/design.md#relay-semantics: ≤ 64 KiB).
const pipeSize = 64 << 10

// maxPooledPipes bounds the empty pipes a loop keeps for reuse.
const maxPooledPipes = 32

type pipe struct{ r, w int }

// getPipe takes an empty pipe from the pool or makes one.
func (l *loop) getPipe() (pipe, error) {
	if n := len(l.pool); n > 0 {
		p := l.pool[n-1]
		l.pool = l.pool[:n-1]
		l.pipesHeld.Add(1)
		return p, nil
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return pipe{-1, -1}, os.NewSyscallError("pipe2", err)
	}
	// Best effort: an unprivileged user past fs.pipe-user-pages-soft gets a
	// smaller pipe, which only costs more splice calls.
	_, _ = unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, pipeSize)
	budget.own.Add(2)
	l.pipesCreated.Add(1)
	l.pipesHeld.Add(1)
	return pipe{fds[0], fds[1]}, nil
}

// putPipe returns an empty pipe to the pool.
func (l *loop) putPipe(p pipe) {
	l.pipesHeld.Add(-1)
	if len(l.pool) < maxPooledPipes {
		l.pool = append(l.pool, p)
		return
	}
	l.destroyPipe(p)
}

// dropPipe destroys a held pipe that may still contain bytes.
func (l *loop) dropPipe(p pipe) {
	l.pipesHeld.Add(-1)
	l.pipesFull.Add(1)
	l.destroyPipe(p)
}

func (l *loop) destroyPipe(p pipe) {
	_ = unix.Close(p.r)
	_ = unix.Close(p.w)
	budget.own.Add(-2)
	l.pipesDestroyed.Add(1)
}
