package engine

import (
	"context"
	"errors"
	"os"
	"syscall"
)

// Sentinel errors shared by every engine. Test them with errors.Is.
var (
	// ErrAddrInUse: the listen address is already bound by another socket.
	ErrAddrInUse = errors.New("address already in use")
	// ErrConnectTimeout: a backend connect did not complete within the connect timeout.
	ErrConnectTimeout = errors.New("backend connect timeout")
	// ErrNoBackend: the policy had no backend left to try for a connection.
	ErrNoBackend = errors.New("all backends unavailable")
	// ErrClosed: the engine was closed or drained.
	ErrClosed = errors.New("engine closed")
)

// FailReason classifies a failed backend connect.
type FailReason uint8

// Connect failure classes, as counted per backend and in metrics.
const (
	FailOther FailReason = iota
	FailTimeout
	FailRefused
)

// String returns the reason as used in status counters and metric labels.
func (r FailReason) String() string {
	switch r {
	case FailTimeout:
		return "timeout"
	case FailRefused:
		return "refused"
	default:
		return "other"
	}
}

// IsLocal reports a connect that failed for bal's own lack of resources —
// out of descriptors, out of local ports (EADDRNOTAVAIL: every ephemeral
// port toward that address is taken), out of kernel memory — which says
// nothing about the backend: it must not count against its health.
func IsLocal(err error) bool {
	for _, e := range [...]syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.EADDRNOTAVAIL, syscall.ENOBUFS, syscall.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Classify maps a connect error to a FailReason with errors.Is, never by
// matching strings.
func Classify(err error) FailReason {
	switch {
	case err == nil:
		return FailOther
	case errors.Is(err, syscall.ECONNREFUSED):
		return FailRefused
	case errors.Is(err, ErrConnectTimeout),
		errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, syscall.ETIMEDOUT):
		return FailTimeout
	default:
		return FailOther
	}
}
