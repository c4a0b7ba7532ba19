//go:build linux

// Package gnetengine is bal's Linux data-path engine: a gnet v2 front that
// owns listening and accepting (SO_REUSEPORT, one listener per event loop),
// and a per-loop data plane on gnet's pkg/netpoll poller that relays each
// admitted connection to a backend with splice(2).
//
// The front detaches every accepted socket in OnOpen, before gnet has read a
// byte (Dup, then gnet.Close), and hands it to a data loop. A data loop is a
// single goroutine running an epoll poller, a timerfd and a pool of pipes. Per
// connection it runs a small state machine:
//
//	connecting ─► header (PROXY v1/v2, optional) ─► relay ─► closed
//	     │ failed / timed out: DialResult, next Pick
//	     └──────── Pick false: closed (all_backends_unavailable)
//
// In relay each direction moves bytes socket → pipe → socket with
// SPLICE_F_NONBLOCK|SPLICE_F_MOVE. A pipe is taken from the loop's pool only
// while bytes are in flight and returned empty (a pipe closed with bytes still
// in it is destroyed). While a destination is blocked the source is not
// polled (backpressure: at most one pipe of bytes in flight per direction). A
// FIN is propagated with shutdown(SHUT_WR) once the pipe is empty (half-close);
// a reset or write error on one side resets the other (SO_LINGER 0). The idle
// timeout is real inactivity, restarted by every byte moved either way, and
// is driven by a per-loop deadline heap and timerfd.
//
// Admission keeps file-descriptor headroom below RLIMIT_NOFILE (the engine
// states its Cost; engine/limits computes the reserve), because an accept
// that fails with EMFILE stops a gnet engine; a connection refused there is
// reported to the policy with Refused. If the front dies anyway the engine
// reports it on Done. Drain closes only the listeners and lets the
// data loops finish open connections until the deadline.
package gnetengine
