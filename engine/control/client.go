package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// Errors of the client. Test them with errors.Is.
var (
	// ErrNotRunning: nothing listens on the control socket (no file, or a
	// stale one nobody answers on).
	ErrNotRunning = errors.New("bal is not running")
	// ErrUnknownBackend: the instance has no such backend, service or route
	// (404 of POST /backends/state).
	ErrUnknownBackend = errors.New("unknown backend")
	// ErrBadRequest: the instance refused the request as malformed (400).
	ErrBadRequest = errors.New("bad request")
)

// maxResponse bounds what the client reads (a status with thousands of
// backends is far below).
const maxResponse = 16 << 20

// Client talks to a control socket.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client of the socket at path; every request also
// ends after timeout (0: no limit besides the context's).
func NewClient(path string, timeout time.Duration) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives:     true,
		ResponseHeaderTimeout: 0,
	}
	return &Client{path: path, hc: &http.Client{Transport: tr, Timeout: timeout}}
}

// Path is the socket's path.
func (c *Client) Path() string { return c.path }

// Status asks for the live state.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if _, err := c.do(ctx, http.MethodGet, "/status", &st, http.StatusOK); err != nil {
		return nil, err
	}
	return &st, nil
}

// Reload asks the instance to reload its config file. A rejected reload is
// not an error: the Reload says OK false and why.
func (c *Client) Reload(ctx context.Context) (*Reload, error) {
	var r Reload
	if _, err := c.do(ctx, http.MethodPost, "/reload", &r, http.StatusOK, http.StatusUnprocessableEntity); err != nil {
		return nil, err
	}
	return &r, nil
}

// Metrics returns the Prometheus text.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	return c.do(ctx, http.MethodGet, "/metrics", nil, http.StatusOK)
}

// Backends lists every backend of every pool with its admin state.
func (c *Client) Backends(ctx context.Context) (*BackendList, error) {
	var l BackendList
	if _, err := c.do(ctx, http.MethodGet, "/backends", &l, http.StatusOK); err != nil {
		return nil, err
	}
	return &l, nil
}

// SetBackendState sets a backend's admin state. An unknown backend (or
// service, or route) wraps ErrUnknownBackend, a request the instance
// refused ErrBadRequest; both carry the instance's message.
func (c *Client) SetBackendState(ctx context.Context, req StateRequest) (*BackendList, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var l BackendList
	if _, err := c.send(ctx, http.MethodPost, "/backends/state", bytes.NewReader(body), &l, http.StatusOK); err != nil {
		return nil, err
	}
	return &l, nil
}

func (c *Client) do(ctx context.Context, method, path string, into any, ok ...int) ([]byte, error) {
	return c.send(ctx, method, path, nil, into, ok...)
}

func (c *Client) send(ctx context.Context, method, path string, reqBody io.Reader, into any, ok ...int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://bal"+path, reqBody)
	if err != nil {
		return nil, err
	}
	if reqBody != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (nothing answers on %s)", ErrNotRunning, c.path)
		}
		return nil, fmt.Errorf("control socket %s: %w", c.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %s %s: %w", c.path, method, path, err)
	}
	good := false
	for _, code := range ok {
		good = good || resp.StatusCode == code
	}
	if !good {
		var ea ErrorAnswer
		if json.Unmarshal(body, &ea) == nil && ea.Error != "" {
			switch resp.StatusCode {
			case http.StatusNotFound:
				return nil, fmt.Errorf("%w: %s", ErrUnknownBackend, ea.Error)
			case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
				return nil, fmt.Errorf("%w: %s", ErrBadRequest, ea.Error)
			}
		}
		return nil, fmt.Errorf("control socket %s: %s %s: %s: %s", c.path, method, path, resp.Status, strings.TrimSpace(firstLine(string(body))))
	}
	if into != nil {
		if err := json.Unmarshal(body, into); err != nil {
			return nil, fmt.Errorf("control socket %s: %s %s: bad answer: %w", c.path, method, path, err)
		}
	}
	return body, nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
