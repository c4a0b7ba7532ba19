package policy

import (
	"context"
	"log/slog"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/health"
	"github.com/bal-lb/bal/engine/pool"
)

// resetTimeout bounds one reset of a backend's connections in the engines.
const resetTimeout = 10 * time.Second

// AdminChange is one pool backend whose admin state was set.
type AdminChange struct {
	Pool     string // the route's name, or config.DefaultServiceName
	Address  string // as configured
	Key      string // normalised identity (config.Backend.Key)
	Old, New pool.AdminState
}

// SetAdmin sets the admin state of the backend with key (config.Backend.Key)
// in the pool named poolName, or in every pool holding it when poolName is
// "" (docs/operations.md#take-a-backend-out-for-a-deploy). Drain and maint
// take the backend out of every pick at once — a source_hash pool maps its
// clients as if it were not configured — and leave its open connections
// alone; maint also pauses its active checks, and back to ready from maint
// a health round runs at once. With closeAfter > 0 (drain or maint only)
// the connections still open that long after are reset; any later SetAdmin
// of the backend cancels a pending reset. It returns one change per pool
// holding the backend (also when its state was already s), none when no
// pool does.
func (p *Policy) SetAdmin(poolName, key string, s pool.AdminState, closeAfter time.Duration) []AdminChange {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	st := p.st.Load()
	var out []AdminChange
	leftMaint := false
	for _, ps := range st.pools {
		if poolName != "" && ps.name != poolName {
			continue
		}
		b := ps.pool.Lookup(key)
		if b == nil {
			continue
		}
		old := b.SetAdmin(s)
		ps.refreshOut()
		if pt := p.timers[b]; pt != nil {
			pt.t.Stop()
			delete(p.timers, b)
		}
		if closeAfter > 0 && s != pool.Ready {
			pt := &pendingReset{}
			pt.t = time.AfterFunc(closeAfter, func() { p.closeAfter(b, pt) })
			p.timers[b] = pt
		}
		leftMaint = leftMaint || (old == pool.Maint && s != pool.Maint)
		out = append(out, AdminChange{Pool: ps.name, Address: b.Name(), Key: b.Key(), Old: old, New: s})
		attrs := []slog.Attr{slog.String("backend", b.Name()), slog.String("pool", ps.name),
			slog.String("state", s.String()), slog.String("previous", old.String()), slog.Int64("active_connections", b.Active())}
		if closeAfter > 0 && s != pool.Ready {
			attrs = append(attrs, slog.Int64("close_after_ms", closeAfter.Milliseconds()))
		}
		st.log.LogAttrs(context.Background(), slog.LevelInfo, "backend admin state set", attrs...)
	}
	if leftMaint {
		p.checker.Trigger() // its health is as old as the maintenance
	}
	return out
}

// pendingReset is one close-after delay of a backend.
type pendingReset struct{ t *time.Timer }

// closeAfter is the close-after delay pt of b running out.
func (p *Policy) closeAfter(b *pool.Backend, pt *pendingReset) {
	p.applyMu.Lock()
	current := p.timers[b] == pt
	if current {
		delete(p.timers, b)
	}
	p.applyMu.Unlock()
	if !current {
		return // a later SetAdmin replaced or cancelled it while it fired
	}
	n := p.closeConns(b, engine.CloseAdminReset)
	p.closedByAdmin.Add(uint64(n))
	p.logger().LogAttrs(context.Background(), slog.LevelInfo, "connections reset: close-after delay over",
		slog.String("backend", b.Name()), slog.String("pool", b.Pool()), slog.String("state", b.Admin().String()), slog.Int("connections", n))
}

// backendDown is a health check taking b down in a service with
// on_backend_down: close (health.Round.OnDown; it must not block).
func (p *Policy) backendDown(b *pool.Backend, err error) {
	go func() {
		n := p.closeConns(b, engine.CloseBackendDown)
		p.closedOnDown.Add(uint64(n))
		p.logger().LogAttrs(context.Background(), slog.LevelWarn, "connections reset: backend down",
			slog.String("backend", b.Name()), slog.String("pool", b.Pool()), slog.String("reason", health.Reason(err)), slog.Int("connections", n))
	}()
}

// closeConns resets b's open connections in every engine of the service.
func (p *Policy) closeConns(b *pool.Backend, reason engine.CloseReason) int {
	if p.reset == nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), resetTimeout)
	defer cancel()
	return p.reset(ctx, func(t engine.Target) bool {
		r, _ := t.Ref.(*pool.Backend)
		return r == b
	}, reason)
}

// stopTimers cancels every pending close-after reset (Run's end).
func (p *Policy) stopTimers() {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	for b, pt := range p.timers {
		pt.t.Stop()
		delete(p.timers, b)
	}
}
