//go:build !linux

package stdengine

// pairFDs is the most descriptors one connection holds here: two sockets
// (the copy goes through a user-space buffer).
const pairFDs = 2

// nofileLimit is unknown here: admission does not check descriptors (the
// accept loop's spare descriptor and back-off still cover EMFILE).
func nofileLimit() int64 { return 0 }

// openFDs is unknown here.
func openFDs() int64 { return -1 }
