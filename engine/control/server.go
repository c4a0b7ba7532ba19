package control

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/server"
)

// Limits of the HTTP server: a client that sends slowly, too much, or
// nothing at all is dropped within a second. The clients are local (bal's
// own CLI sends each request at once, one per connection), so the read
// timeouts can be short: a stalled or silent connection never holds a
// goroutine and a descriptor for long.
const (
	readHeaderTimeout = 500 * time.Millisecond
	readTimeout       = 750 * time.Millisecond // the whole request, body included
	writeTimeout      = 60 * time.Second       // a reload resolving a hostname bind_address may take a while
	idleTimeout       = 750 * time.Millisecond // between requests on a kept-alive connection
	maxHeaderBytes    = 8 << 10
	maxBodyBytes      = 4 << 10 // POST /reload takes no body; a small one is read and ignored
	reloadTimeout     = 45 * time.Second
)

// Daemon is what the control socket serves; *server.Server implements it.
type Daemon interface {
	Status() server.Status
	Snapshot() *config.Snapshot
	ReloadFile(ctx context.Context) (*server.ReloadResult, error)
	Backends() []server.BackendState
	SetBackendState(req server.StateRequest) ([]server.StateChange, string, error)
}

// Options configure a Server. The zero value works.
type Options struct {
	// Version is reported in Status.Version.
	Version string
	// Logger receives the control server's lines; nil discards them.
	Logger *slog.Logger
	// Metrics serves GET /metrics (engine/metrics.Handler, as
	// server.Server.MetricsHandler returns it); nil answers 404.
	Metrics http.Handler
	// Now is the clock for uptime; nil means time.Now.
	Now func() time.Time
}

// Server answers the control routes for one Daemon.
type Server struct {
	d     Daemon
	o     Options
	log   *slog.Logger
	state atomic.Pointer[string]
	srv   *http.Server
}

// New builds the control server for d; nothing listens until Serve.
func New(d Daemon, o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{d: d, o: o, log: o.Logger}
	s.SetState(StateRunning)
	s.srv = &http.Server{
		Handler:                      s,
		ReadHeaderTimeout:            readHeaderTimeout,
		ReadTimeout:                  readTimeout,
		WriteTimeout:                 writeTimeout,
		IdleTimeout:                  idleTimeout,
		MaxHeaderBytes:               maxHeaderBytes,
		DisableGeneralOptionsHandler: true,
		// net/http's own complaints (malformed requests, timeouts) are
		// debug noise, never errors of bal.
		ErrorLog: log.New(logWriter{o.Logger}, "", 0),
	}
	return s
}

// logWriter turns net/http's error log lines into debug slog lines.
type logWriter struct{ l *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.l.Debug("control: http", "detail", string(trimNL(p)))
	return len(p), nil
}

func trimNL(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}

// SetState sets Status.State (StateRunning, StateDraining).
func (s *Server) SetState(state string) { s.state.Store(&state) }

// Serve answers requests on l until Shutdown or Close; it then returns nil.
func (s *Server) Serve(l net.Listener) error {
	err := s.srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting, waits for requests in progress until ctx is
// done, and closes the listener.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Close closes the listener and every connection at once.
func (s *Server) Close() error { return s.srv.Close() }

// Status is the live Status document.
func (s *Server) Status() Status {
	st := StatusFrom(s.d.Status(), s.d.Snapshot(), s.o.Now())
	st.State = *s.state.Load()
	st.Version = s.o.Version
	return st
}

// recoverPanic answers 500 and logs when a handler panicked.
func (s *Server) recoverPanic(w http.ResponseWriter, r *http.Request) {
	if v := recover(); v != nil {
		s.log.Error("control: handler panic", "path", r.URL.Path, "panic", v)
		http.Error(w, "internal error", http.StatusInternalServerError)
	}
}

// ServeHTTP routes the control requests (docs/operations.md#control-socket);
// everything else is 404 (or 405 for a known path with the wrong method).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer s.recoverPanic(w, r)
	w.Header().Set("Cache-Control", "no-store")
	if r.URL.Path == "/backends/state" {
		if allow(w, r, http.MethodPost) {
			s.setBackendState(w, r) // reads up to MaxStateBody itself
		}
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	switch r.URL.Path {
	case "/":
		servePage(w, r)
	case "/backends":
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		writeJSON(w, http.StatusOK, s.backendList())
	case "/status":
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		writeJSON(w, http.StatusOK, s.Status())
	case "/reload":
		if !allow(w, r, http.MethodPost) {
			return
		}
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		s.reload(w, r)
	case "/metrics":
		if s.o.Metrics == nil {
			http.Error(w, "metrics are not available in this build", http.StatusNotFound)
			return
		}
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		s.o.Metrics.ServeHTTP(w, r)
	default:
		http.Error(w, "not found: the control socket serves GET /status, POST /reload, GET /metrics, GET /backends, POST /backends/state and GET / (the status page)", http.StatusNotFound)
	}
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), reloadTimeout)
	defer cancel()
	res, err := s.d.ReloadFile(ctx)
	out := ReloadFrom(res)
	if out == nil { // a Daemon that returned no result: report the error
		msg := "reload failed"
		if err != nil {
			msg = err.Error()
		}
		out = &Reload{Time: s.o.Now().UTC(), Error: &msg, Changes: []string{}}
	}
	code := http.StatusOK
	if !out.OK {
		code = http.StatusUnprocessableEntity
	}
	writeJSON(w, code, out)
}

// allow answers 405 with an Allow header unless r's method is listed.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	allowed := methods[0]
	for _, m := range methods[1:] {
		allowed += ", " + m
	}
	w.Header().Set("Allow", allowed)
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, "encode: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(data, '\n'))
}
