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
// direction (≤ 64 KiB, docs/design.md#relay-semantics) and how often progress is observed.
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
// The runtime's splice takes a pipe (two descriptors) from its pool and
// keeps splicing until the LimitedReader's N bytes moved or EOF, waiting for
// the source with the pipe held. With a fixed N every connection that moved
// fewer bytes than N would sit on one pipe per direction (six descriptors
// per connection, and a pool of hundreds of pipes left open after a burst
// until the garbage collector frees them), and its progress would only be
// reported when N was reached. So each step first waits for the source
// without a pipe, then asks for exactly the bytes already queued on it
// (capped at chunkSize): the splice never waits for the source, a pipe is
// held only while those bytes move, and progress is seen at once.
type spliceCopier struct{}

type spliceStep struct {
	dst    *net.TCPConn
	lr     io.LimitedReader
	raw    syscall.RawConn
	rawErr error
}

func (spliceCopier) newDirection(dst, src *net.TCPConn) stepper {
	raw, err := src.SyscallConn()
	return &spliceStep{dst: dst, lr: io.LimitedReader{R: src}, raw: raw, rawErr: err}
}

func (s *spliceStep) chunk() (int64, bool, error) {
	queued, err := s.pending()
	if err != nil {
		return 0, false, err
	}
	// 0 queued means EOF: ask for one byte so that ReadFrom reports it.
	s.lr.N = int64(min(max(queued, 1), chunkSize))
	n, err := s.dst.ReadFrom(&s.lr)
	return n, err == nil && s.lr.N > 0, err
}

// pending blocks until src has data, EOF or an error, or its read deadline
// (the idle timeout) passes, and returns how many bytes are queued (0 at
// EOF) without taking any. A pending socket error is returned: peeking
// consumed it (a socket reports an error once), so splice would see a clean
// EOF instead of the reset.
func (s *spliceStep) pending() (int, error) {
	if s.rawErr != nil {
		return 0, s.rawErr
	}
	var peek [1]byte
	var queued int
	var perr error
	err := s.raw.Read(func(fd uintptr) bool {
		for {
			n, _, err := syscall.Recvfrom(int(fd), peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				return false // wait for readability
			case err != nil:
				perr = err
			case n > 0:
				queued = max(inQueue(int(fd)), 1)
			}
			return true
		}
	})
	if err == nil && perr != nil {
		err = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("recvfrom", perr)}
	}
	return queued, err
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
