package control

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"net/http"
	"strings"
)

// statusPage is the status page (docs/operations.md#status-page): one
// self-contained HTML document, its CSS and script inline, no external
// asset, that renders GET status (a relative URL: it works on the control
// socket and on runtime.metrics_address alike) every 2 s. The script
// inserts every value as text, never as HTML.
//
//go:embed statuspage.html
var statusPage []byte

// pageCSP allows exactly the page's own inline script (by its hash) and
// style, and requests to its own origin: nothing else loads or runs, even
// if a value ever slipped into the markup.
var pageCSP = func() string {
	s := string(statusPage)
	start := strings.Index(s, "<script>") + len("<script>")
	end := strings.Index(s, "</script>")
	sum := sha256.Sum256([]byte(s[start:end]))
	return "default-src 'none'; script-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; " +
		"style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}()

// servePage answers GET and HEAD / with the status page.
func servePage(w http.ResponseWriter, r *http.Request) {
	if !allow(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(statusPage)
	}
}

// WebHandler is the read-only part of the control routes, for
// runtime.metrics_address (server.Options.Web): GET / (the status page) and
// GET /status. Everything else is 404; nothing it serves changes anything.
func (s *Server) WebHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer s.recoverPanic(w, r)
		w.Header().Set("Cache-Control", "no-store")
		switch r.URL.Path {
		case "/":
			servePage(w, r)
		case "/status":
			if !allow(w, r, http.MethodGet, http.MethodHead) {
				return
			}
			writeJSON(w, http.StatusOK, s.Status())
		default:
			http.Error(w, "not found: this address serves GET / (the status page), GET /status and GET /metrics", http.StatusNotFound)
		}
	})
}
