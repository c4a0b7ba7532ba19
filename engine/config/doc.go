// Package config turns a bal config file (YAML, docs/configuration.md) into
// a validated, immutable Snapshot, and knows where that file lives.
//
// A Snapshot is a list of services. A file is written either in the
// single-service form (top-level port, bind_address, method, backends and
// the other service keys: one TCP service named "default") or as a
// services: list; each service has a default pool and routes, each route a
// pool of its own, and its own health check and access rules.
//
// Parse walks the YAML node tree itself, so every problem is reported with
// the line it is on and the key it is about: unknown keys at every level,
// wrong types, values out of range, duplicates, overlapping services, bad
// routes and health checks. It collects every problem instead of stopping at
// the first and returns them in an *Error (errors.Is(err, ErrInvalid)).
// Warnings — a valid file that is probably not what the operator wants — go
// into Snapshot.Warnings.
//
// In simple mode each service's runtime tunables come from
// Profile(its backend count); in advanced mode the keys of the top-level
// runtime: block and then those of the service's own override the
// auto-tuned values one by one, and a key left out keeps its value.
// Process-wide keys (engine, metrics_address, drain_timeout_ms, access_log)
// live in the top-level block only.
//
// Load reads a file, Resolve finds it (-c, $BAL_HOME/config.yaml,
// /etc/bal/config.yaml), Home is $BAL_HOME (default ~/.bal), WriteDefault
// writes the commented default file, and Snapshot.Changes lists what differs
// between two snapshots. The package has no global state.
package config
