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
	id           uint64
	client, peer netip.AddrPort
	route        string // the pool's name; "" when none was chosen
	inspect      engine.InspectResult
	sni          string
	backend      string
	in, out      int64
	d            time.Duration
	reason       engine.CloseReason
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
			p.logger().LogAttrs(context.Background(), slog.LevelWarn, "access log lines dropped",
				slog.Uint64("dropped", d-reported), slog.Uint64("dropped_total", d))
			reported, last = d, time.Now()
		}
	}
}

// writeAccess writes one access log line. Keys (docs/operations.md#logs):
// service (from the logger), id, client, peer (only when it differs from
// client: an upstream balancer sent a PROXY header), route (the pool's name,
// "default" for the default pool; "" when no pool was chosen), inspect and
// sni (only when the service inspects: the inspection result and the name
// as the client sent it), backend, bytes_in, bytes_out, duration_ms, reason.
func (p *Policy) writeAccess(e accessEntry) {
	attrs := make([]slog.Attr, 0, 12)
	attrs = append(attrs, slog.Uint64("id", e.id), slog.String("client", e.client.String()))
	if e.peer.IsValid() && e.peer != e.client {
		attrs = append(attrs, slog.String("peer", e.peer.String()))
	}
	attrs = append(attrs, slog.String("route", e.route))
	if e.inspect != engine.InspectNone {
		attrs = append(attrs, slog.String("inspect", e.inspect.String()), slog.String("sni", e.sni))
	}
	attrs = append(attrs,
		slog.String("backend", e.backend),
		slog.Int64("bytes_in", e.in),
		slog.Int64("bytes_out", e.out),
		slog.Int64("duration_ms", e.d.Milliseconds()),
		slog.String("reason", string(e.reason)),
	)
	p.logger().LogAttrs(context.Background(), slog.LevelInfo, "connection closed", attrs...)
}
