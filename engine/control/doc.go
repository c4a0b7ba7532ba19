// Package control is bal's control socket: HTTP over a unix socket
// ($BAL_HOME/bal.sock, mode 0600) through which `bal status`, `bal doctor`
// and `bal graceful` talk to the running instance.
//
// Routes (nothing else is served):
//
//	GET  /status   the live state as a Status document (JSON)
//	POST /reload   re-read the config file and apply it; a Reload document
//	GET  /metrics  Prometheus text format (when a metrics handler is set)
//
// The wire types (Status, Backend, Reload, ...) are shared by the server and
// the Client, so both sides agree on every field. The listener replaces a
// stale socket file (nobody answering) and refuses a live one (another
// instance), is created 0600 without a window where it is wider, refuses
// peers of another uid (SO_PEERCRED / LOCAL_PEERCRED) even if the mode is
// loosened, and removes its file on Close. The HTTP server has header, read,
// write and idle timeouts and bounded headers and bodies, so a stuck or
// hostile client cannot hold it.
package control
