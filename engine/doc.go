// Package engine defines what every bal data-path engine implements (Engine)
// and the one object it talks to (Policy), plus the small pieces shared by the
// engines: error classification (Classify, LocalCause), reject reasons,
// tunables, option validation (Options.Validate) and the listener probe.
//
// The upper layers (config, health, protection, control, CLI) only ever see
// this package; engine_linux (gnet + splice) and engine_darwin (standard
// library) implement it, and engine/enginetest is the conformance suite both
// pass. Only cmd/bal, the composition root, imports the engines: it hands
// the server its table of engines (server.Options.Engines).
package engine
