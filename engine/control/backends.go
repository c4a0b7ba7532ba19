package control

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/bal-lb/bal/engine/pool"
	"github.com/bal-lb/bal/engine/server"
)

// MaxStateBody is the largest body POST /backends/state reads; a larger one
// is answered 413.
const MaxStateBody = 64 << 10

// BackendList is GET /backends's answer, and POST /backends/state's: every
// backend of every pool of every service, in config order.
type BackendList struct {
	Backends []BackendEntry `json:"backends"`
	// Changed lists what POST /backends/state set (absent in GET).
	Changed []StateChange `json:"changed,omitempty"`
	// Warning, when set, says the state file could not be written: the
	// states are in force but will not survive a restart.
	Warning string `json:"warning,omitempty"`
}

// BackendEntry is one backend of one pool.
type BackendEntry struct {
	Service           string `json:"service"`
	Pool              string `json:"pool"` // the route's name, or "default"
	Address           string `json:"address"`
	AdminState        string `json:"admin_state"` // ready | drain | maint
	Reachable         bool   `json:"reachable"`
	ActiveConnections int64  `json:"active_connections"`
}

// StateChange is one pool backend POST /backends/state set.
type StateChange struct {
	Service  string `json:"service"`
	Pool     string `json:"pool"`
	Address  string `json:"address"`
	Previous string `json:"previous"`
	State    string `json:"state"`
}

// StateRequest is POST /backends/state's body.
type StateRequest struct {
	Backend string `json:"backend"`           // "host:port" as configured
	Service string `json:"service,omitempty"` // "": every service
	Route   string `json:"route,omitempty"`   // "": every pool; "default": the default pool
	State   string `json:"state"`             // ready | drain | maint
	// CloseAfterMS > 0 (drain and maint only) resets the backend's
	// connections still open that many milliseconds after the state is
	// applied; 0 leaves them.
	CloseAfterMS int64 `json:"close_after_ms,omitempty"`
}

// ErrorAnswer is the body of every error answer of the backend routes.
type ErrorAnswer struct {
	Error string `json:"error"`
}

// maxCloseAfter bounds close_after_ms (a year).
const maxCloseAfter = 365 * 24 * time.Hour

// ParseStateRequest reads POST /backends/state's body: one JSON object, no
// unknown field, backend and state required, state ready, drain or maint,
// close_after_ms a whole number from 0 (none) to a year. Its errors say
// which field is wrong.
func ParseStateRequest(body []byte) (server.StateRequest, error) {
	var req StateRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return server.StateRequest{}, fmt.Errorf("bad JSON: %w (want {\"backend\": \"host:port\", \"state\": \"drain\", \"service\": ..., \"route\": ..., \"close_after_ms\": ...})", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return server.StateRequest{}, errors.New("bad JSON: data after the object")
	}
	if req.Backend == "" {
		return server.StateRequest{}, errors.New(`"backend" is required: the backend as configured, "host:port"`)
	}
	if req.State == "" {
		return server.StateRequest{}, errors.New(`"state" is required: ready, drain or maint`)
	}
	st, err := pool.ParseAdminState(req.State)
	if err != nil {
		return server.StateRequest{}, fmt.Errorf(`"state": %w`, err)
	}
	if req.CloseAfterMS < 0 || time.Duration(req.CloseAfterMS)*time.Millisecond > maxCloseAfter {
		return server.StateRequest{}, fmt.Errorf(`"close_after_ms" %d must be from 0 to %d (a year)`, req.CloseAfterMS, maxCloseAfter.Milliseconds())
	}
	return server.StateRequest{Backend: req.Backend, Service: req.Service, Route: req.Route, State: st,
		CloseAfter: time.Duration(req.CloseAfterMS) * time.Millisecond}, nil
}

func (s *Server) backendList() BackendList {
	bs := s.d.Backends()
	out := BackendList{Backends: make([]BackendEntry, 0, len(bs))}
	for _, b := range bs {
		out.Backends = append(out.Backends, BackendEntry{Service: b.Service, Pool: b.Pool, Address: b.Address,
			AdminState: b.Admin.String(), Reachable: b.Reachable, ActiveConnections: b.Active})
	}
	return out
}

// setBackendState answers POST /backends/state: 200 with the list, 400 for
// bad JSON or a bad field, 404 for an unknown backend (or service or
// route), 413 for a body over MaxStateBody. Only a 200 changes anything.
func (s *Server) setBackendState(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxStateBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeJSON(w, http.StatusRequestEntityTooLarge, ErrorAnswer{Error: fmt.Sprintf("request body over %d bytes", MaxStateBody)})
			return
		}
		writeJSON(w, http.StatusBadRequest, ErrorAnswer{Error: "reading the request: " + err.Error()})
		return
	}
	req, err := ParseStateRequest(body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorAnswer{Error: err.Error()})
		return
	}
	changes, warning, err := s.d.SetBackendState(req)
	switch {
	case errors.Is(err, server.ErrUnknownBackend):
		writeJSON(w, http.StatusNotFound, ErrorAnswer{Error: err.Error()})
		return
	case err != nil:
		writeJSON(w, http.StatusBadRequest, ErrorAnswer{Error: err.Error()})
		return
	}
	out := s.backendList()
	out.Warning = warning
	for _, c := range changes {
		out.Changed = append(out.Changed, StateChange{Service: c.Service, Pool: c.Pool, Address: c.Address, Previous: c.Old.String(), State: c.New.String()})
		s.log.Info("control: backend state set", "service", c.Service, "pool", c.Pool, "backend", c.Address, "state", c.New.String(), "previous", c.Old.String())
	}
	writeJSON(w, http.StatusOK, out)
}
