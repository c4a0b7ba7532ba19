// Package datapath holds the black-box reliability tests of bal's data path
// and resources (research/reliability-anchors.md §4, tests 15–25 and the
// leak gate of 30): the real binary, real sockets and processes, both
// engines. The fast variants run in `make test`; the long ones only under
// `make soak` (baltest.Soak), which also collects every figure.
package datapath
