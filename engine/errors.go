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
	// ErrInvalidOptions: an engine was built with unusable Options (see
	// Options.Validate) or without a policy.
	ErrInvalidOptions = errors.New("invalid engine options")
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

// LocalResource names what this host ran out of when a connect failed for
// a reason of its own (logs: "local_" + the name).
type LocalResource string

// Local resources a connect can lack.
const (
	// LocalFDs: no descriptor left (EMFILE for the process, ENFILE for the system).
	LocalFDs LocalResource = "fds"
	// LocalPorts: no free local port toward that address (EADDRNOTAVAIL:
	// every ephemeral port is taken).
	LocalPorts LocalResource = "ports"
	// LocalMemory: no kernel memory or buffer space (ENOMEM, ENOBUFS).
	LocalMemory LocalResource = "memory"
)

// LocalCause returns what local resource err says bal lacks, or "" when err
// is not a local failure (nil included).
func LocalCause(err error) LocalResource {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return LocalFDs
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return LocalPorts
	case errors.Is(err, syscall.ENOMEM), errors.Is(err, syscall.ENOBUFS):
		return LocalMemory
	}
	return ""
}

// IsLocal reports a connect that failed for bal's own lack of resources
// (see LocalCause), which says nothing about the backend: it must not count
// against its health, and every other backend would fail the same way.
func IsLocal(err error) bool { return LocalCause(err) != "" }

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
