package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/adminstate"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/pool"
)

// Errors of SetBackendState. Test them with errors.Is.
var (
	// ErrUnknownBackend: no pool of the services asked for holds the
	// backend (or the service or route named does not exist).
	ErrUnknownBackend = errors.New("unknown backend")
	// ErrBadStateRequest: the request itself is wrong (a backend that is
	// not host:port, a close-after delay that is negative or given with
	// the ready state).
	ErrBadStateRequest = errors.New("bad backend state request")
)

// BackendState is one pool backend as GET /backends lists it.
type BackendState struct {
	Service   string
	Pool      string // the route's name, or config.DefaultServiceName
	Address   string // as configured
	Admin     pool.AdminState
	Reachable bool
	Active    int64
}

// StateRequest asks to set a backend's admin state.
type StateRequest struct {
	Backend string // "host:port" as configured ("[::1]:80" and "::1:80" alike)
	Service string // "": every service
	Route   string // "": every pool; a route's name, or "default" for the default pool
	State   pool.AdminState
	// CloseAfter > 0 (drain and maint only) resets the backend's
	// connections still open that long after the state is applied.
	CloseAfter time.Duration
}

// StateChange is one pool backend whose state a request set.
type StateChange struct {
	Service  string
	Pool     string
	Address  string
	Old, New pool.AdminState
}

// Backends lists every backend of every pool of every service, in config
// order (services, then each service's pools in config.Service.Pools
// order).
func (s *Server) Backends() []BackendState {
	st := s.Status()
	var out []BackendState
	for _, ss := range st.Services {
		for _, p := range ss.Policy.Pools {
			for _, b := range p.Backends {
				out = append(out, BackendState{Service: ss.Name, Pool: p.Name, Address: b.Address, Admin: b.Admin, Reachable: b.Reachable, Active: b.Active})
			}
		}
	}
	return out
}

// SetBackendState sets the admin state of a backend in every pool that
// holds it, narrowed to one service and one route when the request names
// them (docs/operations.md#take-a-backend-out-for-a-deploy), and saves
// every state to the state file. On an error nothing changes: a backend no
// pool holds (or a service or route that does not exist) wraps
// ErrUnknownBackend, a malformed request ErrBadStateRequest. warning, when
// not empty, says the state file could not be written (the states are in
// force, but would not survive a restart).
func (s *Server) SetBackendState(req StateRequest) (changes []StateChange, warning string, err error) {
	key, err := adminstate.BackendKey(req.Backend)
	switch {
	case err != nil:
		return nil, "", fmt.Errorf("%w: %w", ErrBadStateRequest, err)
	case req.CloseAfter < 0:
		return nil, "", fmt.Errorf("%w: close-after %v is negative", ErrBadStateRequest, req.CloseAfter)
	case req.CloseAfter > 0 && req.State == pool.Ready:
		return nil, "", fmt.Errorf("%w: close-after applies to drain and maint (ready takes connections again)", ErrBadStateRequest)
	case req.State > pool.Maint:
		return nil, "", fmt.Errorf("%w: unknown state %d", ErrBadStateRequest, req.State)
	}
	svcs := s.serviceList() // before stateMu: Start holds mu, then takes stateMu
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	var names []string
	var targets []*service
	for _, svc := range svcs {
		name := svc.config().Name
		names = append(names, name)
		if req.Service == "" || req.Service == name {
			targets = append(targets, svc)
		}
	}
	if len(targets) == 0 {
		return nil, "", fmt.Errorf("%w: no service %q (services: %s)", ErrUnknownBackend, req.Service, strings.Join(names, ", "))
	}
	if req.Route != "" {
		found := false
		for _, svc := range targets {
			for _, p := range svc.config().Pools() {
				found = found || p.Name == req.Route
			}
		}
		if !found {
			where := "any service"
			if req.Service != "" {
				where = "service " + req.Service
			}
			return nil, "", fmt.Errorf("%w: no route %q in %s (the default pool is %q)", ErrUnknownBackend, req.Route, where, config.DefaultServiceName)
		}
	}
	for _, svc := range targets {
		for _, c := range svc.policy.SetAdmin(req.Route, key, req.State, req.CloseAfter) {
			changes = append(changes, StateChange{Service: svc.config().Name, Pool: c.Pool, Address: c.Address, Old: c.Old, New: c.New})
		}
	}
	if len(changes) == 0 {
		where := ""
		if req.Service != "" {
			where += " in service " + req.Service
		}
		if req.Route != "" {
			where += " in route " + req.Route
		}
		return nil, "", fmt.Errorf("%w: backend %s is not configured%s", ErrUnknownBackend, req.Backend, where)
	}
	return changes, s.persistLocked(svcs), nil
}

// serviceList is the services in force, in config order.
func (s *Server) serviceList() []*service {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.services)
}

// stateKey identifies a pool backend in the state file.
type stateKey struct{ service, pool, key string }

// adminEntries are the backends of svcs not in the ready state, in config
// order.
func adminEntries(svcs []*service) ([]adminstate.Entry, map[stateKey]string) {
	var out []adminstate.Entry
	set := map[stateKey]string{}
	for _, svc := range svcs {
		st := svc.policy.Status()
		for _, p := range st.Pools {
			for _, b := range p.Backends {
				if b.Admin == pool.Ready {
					continue
				}
				out = append(out, adminstate.Entry{Service: st.Service, Pool: p.Name, Backend: b.Address, State: b.Admin.String()})
				set[stateKey{st.Service, p.Name, b.Key}] = b.Admin.String()
			}
		}
	}
	return out, set
}

// persistLocked writes the state file with the states of svcs (the
// services in force) when they differ from what it holds; it returns the
// error's text (logged once per distinct error) when the file cannot be
// written. Called with stateMu held.
func (s *Server) persistLocked(svcs []*service) string {
	if s.opts.StatePath == "" {
		return ""
	}
	entries, set := adminEntries(svcs)
	if s.persisted != nil && mapsEqual(set, s.persisted) {
		return ""
	}
	if err := adminstate.Save(s.opts.StatePath, adminstate.File{Backends: entries}); err != nil {
		if msg := err.Error(); msg != s.saveErr {
			s.saveErr = msg
			s.log.Error("state file not written: the admin states are in force but will not survive a restart", "path", s.opts.StatePath, "error", msg)
		}
		return err.Error()
	}
	s.saveErr = ""
	s.persisted = set
	return ""
}

func mapsEqual(a, b map[stateKey]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// restoreStates applies the state file's states to svcs before their
// listeners open; a state whose backend is no longer configured in that
// pool is dropped with a log line (and from the file at the next write:
// saveStates after a successful start), and an unreadable file is logged
// and ignored.
func (s *Server) restoreStates(svcs []*service) {
	if s.opts.StatePath == "" {
		return
	}
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	f, err := adminstate.Load(s.opts.StatePath)
	if err != nil {
		s.log.Warn("state file ignored: every backend starts ready", "path", s.opts.StatePath, "error", err.Error())
		s.persisted = map[stateKey]string{}
		return
	}
	byName := map[string]*service{}
	for _, svc := range svcs {
		byName[svc.config().Name] = svc
	}
	loaded := map[stateKey]string{}
	for _, e := range f.Backends {
		key, _ := adminstate.BackendKey(e.Backend) // Load checked it
		loaded[stateKey{e.Service, e.Pool, key}] = e.State
		st, _ := pool.ParseAdminState(e.State)
		var changes int
		if svc := byName[e.Service]; svc != nil {
			changes = len(svc.policy.SetAdmin(e.Pool, key, st, 0))
		}
		if changes == 0 {
			s.log.Info("admin state dropped: the backend is no longer configured in that pool",
				"service", e.Service, "pool", e.Pool, "backend", e.Backend, "state", e.State)
			continue
		}
		s.log.Info("admin state restored from the state file", "service", e.Service, "pool", e.Pool, "backend", e.Backend, "state", e.State)
	}
	s.persisted = loaded
}

// saveStates writes the state file if the states of svcs differ from it.
func (s *Server) saveStates(svcs []*service) {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	s.persistLocked(svcs)
}

// statesAfterReload drops, with a log line, the states of backends a
// reload removed from their pool, and saves the states (a renamed service
// keeps its backends' states under its new name).
func (s *Server) statesAfterReload() {
	svcs := s.serviceList()
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	_, now := adminEntries(svcs)
	kept := map[string]map[string]bool{} // service → "pool\x00key" still configured
	for _, svc := range svcs {
		cfg := svc.config()
		m := map[string]bool{}
		for _, p := range cfg.Pools() {
			for _, b := range p.Backends {
				m[p.Name+"\x00"+b.Key()] = true
			}
		}
		kept[cfg.Name] = m
	}
	var dropped []stateKey
	for k := range s.persisted {
		if _, ok := now[k]; !ok && !kept[k.service][k.pool+"\x00"+k.key] {
			dropped = append(dropped, k)
		}
	}
	was := s.persisted
	s.persistLocked(svcs) // the file first: the log line says it is gone
	for _, k := range dropped {
		s.log.Info("admin state dropped: the backend is no longer configured in that pool",
			"service", k.service, "pool", k.pool, "backend", k.key, "state", was[k])
	}
}

// resetConns resets the connections of svc whose backend satisfies match
// in every engine serving it (its current and draining listeners), for
// the policy's Reset hook.
func (s *Server) resetConns(ctx context.Context, svc *service, match func(engine.Target) bool, reason engine.CloseReason) int {
	s.mu.Lock()
	var engs []engine.Engine
	if svc.cur != nil {
		engs = append(engs, svc.cur.eng)
	}
	for l := range svc.draining {
		engs = append(engs, l.eng)
	}
	s.mu.Unlock()
	n := 0
	for _, e := range engs {
		r, ok := e.(engine.Resetter)
		if !ok {
			s.resetUnsupported.Do(func() {
				s.log.Warn("this engine cannot reset connections: close-after and on_backend_down: close have no effect", "service", svc.config().Name)
			})
			continue
		}
		n += r.Reset(ctx, match, reason)
	}
	if n > 0 {
		s.log.Debug("connections reset", "service", svc.config().Name, "reason", string(reason), "connections", n, slog.Int("engines", len(engs)))
	}
	return n
}
