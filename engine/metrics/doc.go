// Package metrics renders a running bal's live status (server.Status) as a
// Prometheus text exposition, format 0.0.4: the stable metrics of docs/metrics.md plus a few
// extras, each family with one HELP and one TYPE line, in a fixed order
// (backends in config order), so two scrapes of the same state are byte for
// byte identical.
//
// It keeps no state of its own: every value is read from the status at
// scrape time, so counters survive reloads exactly as the server's do and a
// removed backend's series simply disappear. Handler serves it over HTTP:
// server.Options.Metrics builds it over the server's live status, served on
// runtime.metrics_address and on the control socket's GET /metrics.
package metrics
