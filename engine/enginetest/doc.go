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
// engine.ErrInvalidOptions) and goroutine leaks. With Options.Inspection and
// Options.ProxyIn (RunWith) it also checks ClientHello inspection (routing by
// SNI, ALPN and source; hellos one byte per segment, over two records,
// large, oversized, not TLS, silent or cut short; 64 MiB behind a hello)
// and PROXY headers read from an upstream balancer (trusted, LOCAL,
// untrusted, malformed, silent), with no socket left open. RunUDP is the
// suite of a UDP engine (an engine package's NewUDP): datagrams and flows,
// see its comment. It also exports the helpers it uses (a scripted Policy,
// TCP and UDP backends, address helpers, ClientHello) for engine-specific
// tests.
package enginetest
