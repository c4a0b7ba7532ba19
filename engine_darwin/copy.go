package stdengine

import (
	"errors"
	"io"
	"net"
	"os"
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
//
// The runtime's splice takes a pipe (two descriptors) from its pool before
// it waits for the source, and holds it while blocked: an idle connection
// would pin two pipes, six descriptors in all, and a burst of idle
// connections would leave hundreds of pooled pipes open until the garbage
// collector frees them. So a direction whose source looked drained first
// waits for it to become readable (data, EOF or an error) without a pipe,
// and only then splices; a pipe is held only while bytes are moving.
type spliceCopier struct{}

type spliceStep struct {
	dst     *net.TCPConn
	lr      io.LimitedReader
	raw     syscall.RawConn
	rawErr  error
	drained bool // the last chunk was short: src is probably empty
}

func (spliceCopier) newDirection(dst, src *net.TCPConn) stepper {
	raw, err := src.SyscallConn()
	return &spliceStep{dst: dst, lr: io.LimitedReader{R: src}, raw: raw, rawErr: err, drained: true}
}

func (s *spliceStep) chunk() (int64, bool, error) {
	if s.drained {
		if err := s.waitReadable(); err != nil {
			return 0, false, err
		}
	}
	s.lr.N = chunkSize
	n, err := s.dst.ReadFrom(&s.lr)
	s.drained = s.lr.N > 0
	return n, err == nil && s.lr.N > 0, err
}

// waitReadable blocks until src has data, EOF or an error pending, or its
// read deadline (the idle timeout) passes, without taking data. A pending
// error is returned: peeking consumed it (the socket reports an error once),
// so splice would see a clean EOF instead of the reset.
func (s *spliceStep) waitReadable() error {
	if s.rawErr != nil {
		return s.rawErr
	}
	var peek [1]byte
	var perr error
	err := s.raw.Read(func(fd uintptr) bool {
		for {
			_, _, err := syscall.Recvfrom(int(fd), peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch err {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait for readability
			}
			perr = err // nil: data or EOF, which splice will see
			return true
		}
	})
	if err == nil && perr != nil {
		err = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("recvfrom", perr)}
	}
	return err
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
