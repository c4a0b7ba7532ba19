// Package config turns a bal config file (YAML, SPEC §2) into a validated,
// immutable Snapshot, and knows where that file lives (SPEC §1, §4).
//
// Parse walks the YAML node tree itself, so every problem is reported with
// the line it is on: unknown keys (at the top level, in runtime: and in each
// backend), wrong types, values out of range, duplicates. It collects every
// problem instead of stopping at the first and returns them in an *Error
// (errors.Is(err, ErrInvalid)). Warnings — a valid file that is probably not
// what the operator wants — go into Snapshot.Warnings.
//
// In simple mode the runtime tunables come from Profile(len(backends)); in
// advanced mode each runtime: key overrides its auto-tuned value, and a key
// left out keeps it.
//
// Load reads a file, Resolve finds it (-c, $BAL_HOME/config.yaml,
// /etc/bal/config.yaml), Home is $BAL_HOME (default ~/.bal), WriteDefault
// writes the commented default file, and Snapshot.Changes lists what differs
// between two snapshots. The package has no global state.
package config
