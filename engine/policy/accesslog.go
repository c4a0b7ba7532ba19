package policy

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/bal-lb/bal/engine"
)

// accessEntry is one closed connection waiting to be logged.
type accessEntry struct {
	id      uint64
	client  netip.AddrPort
	backend string
	in, out int64
	d       time.Duration
	reason  engine.CloseReason
}

// RunAccessLog writes queued access log lines until ctx is done (part of
// Run), then writes what is still queued. It reports dropped lines at most
// once a second.
func (p *Policy) RunAccessLog(ctx context.Context) {
	var reported uint64
	var last time.Time
	for {
		select {
		case e := <-p.access:
			p.writeAccess(e)
		case <-ctx.Done():
			for {
				select {
				case e := <-p.access:
					p.writeAccess(e)
				default:
					return
				}
			}
		}
		if d := p.accessDropped.Load(); d != reported && time.Since(last) >= time.Second {
			p.log.LogAttrs(context.Background(), slog.LevelWarn, "access log lines dropped",
				slog.Uint64("dropped", d-reported), slog.Uint64("dropped_total", d))
			reported, last = d, time.Now()
		}
	}
}

func (p *Policy) writeAccess(e accessEntry) {
	p.log.LogAttrs(context.Background(), slog.LevelInfo, "connection closed",
		slog.Uint64("id", e.id),
		slog.String("client", e.client.String()),
		slog.String("backend", e.backend),
		slog.Int64("bytes_in", e.in),
		slog.Int64("bytes_out", e.out),
		slog.Int64("duration_ms", e.d.Milliseconds()),
		slog.String("reason", string(e.reason)),
	)
}
