package server

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// metricsListener serves GET /metrics on runtime.metrics_address, and
// Options.Web (the status page) on every other path.
type metricsListener struct {
	addr string
	ln   net.Listener
	srv  *http.Server
}

// listenMetrics binds addr and serves the metrics there; "" or no
// Options.Metrics means no listener (nil, nil).
func (s *Server) listenMetrics(addr string) (*metricsListener, error) {
	if addr == "" || s.metricsH == nil {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("runtime.metrics_address %s: %w", addr, err)
	}
	m := &metricsListener{addr: addr, ln: ln}
	h := s.metricsH
	if web := s.opts.Web; web != nil {
		metrics := s.metricsH
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/metrics" {
				metrics.ServeHTTP(w, r)
				return
			}
			web.ServeHTTP(w, r)
		})
	}
	m.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          nil,
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("metrics listener stopped", "address", addr, "error", err.Error())
		}
	}()
	s.log.Info("metrics listening", "address", ln.Addr().String())
	return m, nil
}

// MetricsHandler is the GET /metrics handler built by Options.Metrics (the
// control socket mounts it too), or nil without Options.Metrics.
func (s *Server) MetricsHandler() http.Handler { return s.metricsH }

func (m *metricsListener) address() string {
	if m == nil {
		return ""
	}
	return m.addr
}

// Addr is the bound address (port 0 resolved).
func (m *metricsListener) Addr() net.Addr { return m.ln.Addr() }

func (m *metricsListener) close() {
	if m != nil {
		_ = m.srv.Close()
	}
}

// MetricsAddr is the address the metrics listener is bound to, or nil.
func (s *Server) MetricsAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.metrics == nil {
		return nil
	}
	return s.metrics.Addr()
}
