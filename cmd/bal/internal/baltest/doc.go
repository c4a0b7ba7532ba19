// Package baltest is the harness for black-box tests that run the real bal
// binary: build it once, start instances with their own BAL_HOME and free
// loopback ports, read their JSON logs, signal and stop them, measure them
// (fds, RSS, threads) and record figures for `make soak`'s table. Every
// process it starts is ended when the test ends, even on failure.
package baltest
