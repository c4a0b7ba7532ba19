//go:build !linux && !darwin

package limits

// Somaxconn is not known on this system.
func Somaxconn() (int, error) { return 0, ErrUnsupported }
