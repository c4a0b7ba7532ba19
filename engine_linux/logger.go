//go:build linux

package gnetengine

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
)

// gnetLogger routes gnet's logging into slog so that gnet's own zap logger
// stays silent. gnet's Info lines are internal chatter and go to Debug. The
// first and last Error lines are kept: gnet.Run returns nil when an event
// loop dies, and those lines are the only record of why (the first is the
// cause, e.g. the accept error; the last is usually the shutdown summary).
type gnetLogger struct {
	l     *slog.Logger
	first atomic.Pointer[string]
	last  atomic.Pointer[string]
}

func (g *gnetLogger) logf(level slog.Level, format string, args []any) string {
	if !g.l.Enabled(context.Background(), level) && level < slog.LevelError {
		return ""
	}
	msg := fmt.Sprintf(format, args...)
	g.l.Log(context.Background(), level, msg)
	return msg
}

func (g *gnetLogger) Debugf(format string, args ...any) { g.logf(slog.LevelDebug, format, args) }
func (g *gnetLogger) Infof(format string, args ...any)  { g.logf(slog.LevelDebug, format, args) }
func (g *gnetLogger) Warnf(format string, args ...any)  { g.logf(slog.LevelWarn, format, args) }

func (g *gnetLogger) Errorf(format string, args ...any) {
	msg := g.logf(slog.LevelError, format, args)
	g.first.CompareAndSwap(nil, &msg)
	g.last.Store(&msg)
}

func (g *gnetLogger) Fatalf(format string, args ...any) { g.Errorf(format, args...) }

// lastError describes the errors gnet logged, or says there were none.
func (g *gnetLogger) lastError() string {
	first, last := g.first.Load(), g.last.Load()
	switch {
	case first == nil:
		return "no error logged"
	case first == last:
		return *first
	default:
		return *first + " (then: " + *last + ")"
	}
}
