// Package stdengine is bal's portable engine: standard-library listener and
// goroutines, one pair of copy directions per proxied connection. It is the
// default on macOS and is selected on Linux with `runtime.engine: std`.
//
// Nothing here is darwin-only: the package builds and passes the engine
// conformance suite on Linux too, where io copying between two bare
// *net.TCPConn values uses splice(2) (any wrapper would silently turn that
// off, so the copy loop hands the kernel the raw connections).
package stdengine
