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
// last Error line is kept: gnet.Run returns nil when an event loop dies, and
// that line is the only record of why.
type gnetLogger struct {
	l    *slog.Logger
	last atomic.Pointer[string]
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
	g.last.Store(&msg)
}

func (g *gnetLogger) Fatalf(format string, args ...any) { g.Errorf(format, args...) }

// lastError is the last error gnet logged, or a placeholder.
func (g *gnetLogger) lastError() string {
	if s := g.last.Load(); s != nil {
		return *s
	}
	return "no error logged"
}
