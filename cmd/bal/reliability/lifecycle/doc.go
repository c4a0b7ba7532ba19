// Package lifecycle holds bal's black-box reliability and security tests
// for reloads, start/stop, shutdown and the files and control socket in
// $BAL_HOME (research note reliability-anchors.md §4, tests 1–8 and 26–29):
// each runs the real binary, real backends and real clients, signals it,
// feeds it bad configs, attacks its files and control socket as another
// local user, and measures what happens. The fast variants run in
// `make test`; the long ones (baltest.Soak) in `make soak`, and every test
// records its figure with baltest.Record.
package lifecycle
