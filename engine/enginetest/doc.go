// Package enginetest is the conformance suite every bal engine passes. An
// engine package runs it from a _test.go file:
//
//	func TestConformance(t *testing.T) { enginetest.Run(t, mypkg.New) }
//
// The suite drives the engine over loopback with real sockets: byte-exact
// relay of 0 B to 64 MiB in both directions, half-close both ways, reset
// propagation, the real idle timeout, bounded memory under a stalled reader,
// connect failover and timeouts, admission limits (refusals are counted by
// the policy, once), drain, PROXY headers, invalid options (errors wrap
// engine.ErrInvalidOptions) and goroutine leaks. RunUDP is the suite of a
// UDP engine (an engine package's NewUDP): datagrams and flows, see its
// comment. It also exports the helpers it uses (a scripted Policy,
// TCP and UDP backends, address helpers) for engine-specific tests.
package enginetest
