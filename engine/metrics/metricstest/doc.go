// Package metricstest parses a Prometheus text exposition (format 0.0.4)
// strictly, for tests of bal's /metrics: every line must parse, every family
// has exactly one HELP and one TYPE line before its samples, a family's
// samples are contiguous, no series appears twice, and label values use only
// the format's escapes. A looser parser would let a malformed exposition
// pass; this one is meant to fail on anything a Prometheus server might
// reject or misread.
package metricstest
