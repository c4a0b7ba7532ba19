package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/access"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/policy"
)

// service is one configured service as it runs: its policy and tunables
// (both live across reloads while the service is kept, renames included)
// and its listeners.
type service struct {
	cfg      atomic.Pointer[config.Service] // in force; stored under mu
	policy   *policy.Policy
	tunables *engine.TunableStore

	// Guarded by Server.mu.
	cur      *listener              // accepting; nil before Start, after removal, or after a failed restart
	draining map[*listener]struct{} // retired, finishing their connections
	retired  stats                  // counters of listeners that drained
	restarts []time.Time            // restarts of a listener that died on its own
	stopRun  context.CancelFunc     // ends policy.Run; nil until Start
	removed  bool                   // a reload removed the service
}

// config is the service's config in force.
func (svc *service) config() *config.Service { return svc.cfg.Load() }

// newService prepares cfg's policy and tunables; nothing runs yet. The
// error (tunables the engine cannot take) names the service.
func (s *Server) newService(cfg *config.Service) (*service, error) {
	t, err := tunables(cfg)
	if err != nil {
		err = fmt.Errorf("service %s: %w", cfg.Name, err)
	}
	svc := &service{
		tunables: engine.NewTunableStore(t),
		draining: make(map[*listener]struct{}),
	}
	po := s.opts.Policy
	po.Logger = s.log
	po.Reset = func(ctx context.Context, match func(engine.Target) bool, reason engine.CloseReason) int {
		return s.resetConns(ctx, svc, match, reason)
	}
	svc.policy = policy.New(cfg, po)
	svc.cfg.Store(cfg)
	return svc, err
}

// listener is one engine on one address, serving one service.
type listener struct {
	svc      *service
	eng      engine.Engine
	impl     Engine // which engine it is
	addr     netip.AddrPort
	backlog  int
	stop     chan struct{}      // closed when it is retired (no more restarts)
	cut      context.CancelFunc // ends its drain: closes what is left (set by retire)
	deadline *time.Timer        // calls cut after a removed service's drain timeout
}

// stats are engine counters summed over listeners.
type stats engine.Stats

func (a *stats) add(b engine.Stats) {
	a.Accepted += b.Accepted
	a.Active += b.Active
	a.BytesIn += b.BytesIn
	a.BytesOut += b.BytesOut
	a.DatagramsIn += b.DatagramsIn
	a.DatagramsOut += b.DatagramsOut
	a.Dropped.Add(b.Dropped)
}

// tunables are the engine settings of svc: its runtime keys
// (docs/configuration.md#runtime-keys) and inbound PROXY header.
func tunables(svc *config.Service) (engine.Tunables, error) {
	rt := svc.Runtime
	t := engine.Tunables{
		ConnectTimeout:     rt.BackendConnectTimeout,
		IdleTimeout:        rt.ConnectionIdleTimeout,
		ProxyHeaderTimeout: rt.ProxyHeaderTimeout,
		Inspect:            svc.Inspects(),
		InspectTimeout:     rt.TLSInspectTimeout,
		UDPIdleTimeout:     rt.UDPIdleTimeout,
	}
	switch rt.ProxyProtocol {
	case config.ProxyV1:
		t.ProxyProtocol = engine.ProxyV1
	case config.ProxyV2:
		t.ProxyProtocol = engine.ProxyV2
	}
	switch a := svc.Access.AcceptProxyProtocol; a {
	case "", config.ProxyOff:
		return t, nil
	case config.ProxyV1:
		t.ProxyIn = engine.ProxyInV1
	case config.ProxyV2:
		t.ProxyIn = engine.ProxyInV2
	case config.ProxyAny:
		t.ProxyIn = engine.ProxyInAny
	default:
		return t, fmt.Errorf("accept_proxy_protocol %q is not off, v1, v2 or any", a)
	}
	set, err := access.NewPrefixSet(svc.Access.TrustedProxies)
	if err != nil {
		return t, fmt.Errorf("trusted_proxies: %w", err)
	}
	t.Trusted = set
	return t, nil
}

// ServiceListenAddr resolves a service's bind_address:port to one address:
// IP literals as they are (IPv4-mapped ones as IPv4), a hostname to its
// first address. It is also the address reloads compare.
func ServiceListenAddr(ctx context.Context, svc *config.Service) (netip.AddrPort, error) {
	port := uint16(svc.Port)
	if a, err := netip.ParseAddr(svc.BindAddress); err == nil {
		return netip.AddrPortFrom(a.Unmap(), port), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", svc.BindAddress)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bind_address %q: %w", svc.BindAddress, err)
	}
	if len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("bind_address %q: no address", svc.BindAddress)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), port), nil
}

// ListenAddr is ServiceListenAddr of the snapshot's first service.
func ListenAddr(ctx context.Context, s *config.Snapshot) (netip.AddrPort, error) {
	if len(s.Services) == 0 {
		return netip.AddrPort{}, fmt.Errorf("the config has no service")
	}
	return ServiceListenAddr(ctx, &s.Services[0])
}
