//go:build !linux && !darwin

package control

import (
	"errors"
	"net"
)

// peerUID is not implemented here: the socket's mode (0600 in a 0700
// directory) is the guard.
func peerUID(*net.UnixConn) (int, error) { return 0, errors.ErrUnsupported }
