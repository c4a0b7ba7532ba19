package stdengine

import (
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"
)

// chunkSize bounds what one copy step moves, and so the bytes in flight per
// direction (SPEC §3.1: ≤ 64 KiB) and how often progress is observed.
const chunkSize = 64 << 10

// copier makes the per-direction copy step. spliceCopier is used on Linux,
// bufferCopier elsewhere; both run the conformance suite on Linux.
type copier interface {
	newDirection(dst, src *net.TCPConn) stepper
}

type stepper interface {
	// chunk moves up to chunkSize bytes; eof reports src's end of stream.
	chunk() (n int64, eof bool, err error)
}

var defaultCopier copier = bufferCopier{}

func init() {
	if runtime.GOOS == "linux" {
		defaultCopier = spliceCopier{}
	}
}

// spliceCopier hands both bare *net.TCPConn values to the runtime, which
// moves the bytes with splice(2) on Linux (through a LimitedReader, which
// keeps splice on).
type spliceCopier struct{}

type spliceStep struct {
	dst *net.TCPConn
	lr  io.LimitedReader
}

func (spliceCopier) newDirection(dst, src *net.TCPConn) stepper {
	return &spliceStep{dst: dst, lr: io.LimitedReader{R: src}}
}

func (s *spliceStep) chunk() (int64, bool, error) {
	s.lr.N = chunkSize
	n, err := s.dst.ReadFrom(&s.lr)
	return n, err == nil && s.lr.N > 0, err
}

// bufferCopier reads into a pooled buffer taken only once the socket is
// readable, so an idle connection holds no buffer.
type bufferCopier struct{}

var bufPool = sync.Pool{New: func() any { return new([32 << 10]byte) }}

type bufferStep struct {
	dst *net.TCPConn
	raw syscall.RawConn
	err error
}

func (bufferCopier) newDirection(dst, src *net.TCPConn) stepper {
	raw, err := src.SyscallConn()
	return &bufferStep{dst: dst, raw: raw, err: err}
}

func (s *bufferStep) chunk() (int64, bool, error) {
	if s.err != nil {
		return 0, false, s.err
	}
	var (
		buf  *[32 << 10]byte
		n    int
		rerr error
	)
	err := s.raw.Read(func(fd uintptr) bool {
		b := bufPool.Get().(*[32 << 10]byte)
		for {
			n, rerr = syscall.Read(int(fd), b[:])
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			bufPool.Put(b)
			return false
		}
		buf = b
		return true
	})
	if buf == nil {
		return 0, false, err
	}
	defer bufPool.Put(buf)
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, false, &net.OpError{Op: "read", Net: "tcp", Err: err}
	}
	if n <= 0 {
		return 0, true, nil
	}
	w, err := s.dst.Write(buf[:n])
	if err != nil && errors.Is(err, syscall.ECONNRESET) {
		err = &net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE} // the destination failed
	}
	return int64(w), false, err
}
