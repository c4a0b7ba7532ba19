package baltest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"time"
)

// Control is an HTTP client for a bal's control socket ($BAL_HOME/bal.sock)
// that the test process talks to directly (no CLI process per request).
type Control struct {
	Path string
	hc   *http.Client
}

// NewControl is a client for the control socket in home.
func NewControl(home string) *Control {
	path := filepath.Join(home, "bal.sock")
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}
	return &Control{Path: path, hc: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

// Status is GET /status, decoded.
func (c *Control) Status() (map[string]any, error) {
	resp, err := c.hc.Get("http://bal/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /status: %s: %s", resp.Status, body)
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("GET /status: %w", err)
	}
	return m, nil
}

// Close releases idle connections.
func (c *Control) Close() { c.hc.CloseIdleConnections() }

// Reload is POST /reload: it returns whether the reload was applied and the
// decoded answer.
func (c *Control) Reload() (bool, map[string]any, error) {
	resp, err := c.hc.Post("http://bal/reload", "", nil)
	if err != nil {
		return false, nil, err
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&m); err != nil {
		return false, nil, fmt.Errorf("POST /reload (%s): %w", resp.Status, err)
	}
	return resp.StatusCode == http.StatusOK && m["ok"] == true, m, nil
}
