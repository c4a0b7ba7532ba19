package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
)

// ReloadFile re-reads the file the server was started with and applies it.
// Concurrent calls run one after the other, each reading the file when its
// turn comes.
func (s *Server) ReloadFile(ctx context.Context) (*ReloadResult, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	path := s.Snapshot().Path
	next, err := config.Load(path)
	if err != nil {
		return s.reject(fmt.Errorf("%w: %w", ErrReloadRejected, err))
	}
	return s.reload(ctx, next)
}

func (s *Server) reject(err error) (*ReloadResult, error) {
	s.reloadFailures.Add(1)
	r := &ReloadResult{Time: time.Now(), Error: err.Error()}
	s.mu.Lock()
	s.last = r
	s.mu.Unlock()
	s.log.Error("reload rejected; the previous configuration keeps serving", "error", err.Error())
	return r, err
}

// Reload applies next live (docs/design.md#reload). On any error nothing
// changes and the error wraps ErrReloadRejected.
func (s *Server) Reload(ctx context.Context, next *config.Snapshot) (*ReloadResult, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	return s.reload(ctx, next)
}

// planned is what a reload does to one service of the new snapshot.
type planned struct {
	cfg     *config.Service
	svc     *service // the running service it continues; a new one when added
	added   bool
	renamed string // the old name when a removed service's listener is kept under this name
	tun     engine.Tunables
	addr    netip.AddrPort // resolved listen address
	fresh   *listener      // bound by this reload; nil when the current listener stays
	backlog bool           // the current listener's backlog changes
}

// running is one current listener as a reload found it.
type running struct {
	addr    netip.AddrPort
	impl    string
	proto   config.Protocol
	backlog int
	l       *listener // nil: the service has no listener (a restart failed)
}

// reload is Reload with reloadMu held. Only reloads add or remove services,
// so the service list read at the start stays valid until the commit.
func (s *Server) reload(ctx context.Context, next *config.Snapshot) (*ReloadResult, error) {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return s.reject(fmt.Errorf("%w: %w", ErrReloadRejected, ErrStopped))
	case s.started.IsZero():
		s.mu.Unlock()
		return s.reject(fmt.Errorf("%w: %w", ErrReloadRejected, ErrNotStarted))
	}
	prev, olds := s.snap, append([]*service(nil), s.services...)
	now := make(map[*service]running, len(olds))
	for _, o := range olds {
		r := running{proto: o.config().Protocol, l: o.cur}
		if o.cur != nil {
			r.addr, r.impl, r.backlog = o.cur.addr, o.cur.impl.Name, o.cur.backlog
		}
		now[o] = r
	}
	s.mu.Unlock()

	plans, reverts, metrics, err := s.prepare(ctx, next, olds, now)
	if err != nil {
		for _, p := range plans {
			if p.fresh != nil {
				_ = p.fresh.eng.Close()
			}
		}
		for _, undo := range reverts {
			undo()
		}
		metrics.close()
		return s.reject(fmt.Errorf("%w: %w", ErrReloadRejected, err))
	}
	changes := next.Changes(prev)

	// Commit: nothing below can fail.
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		for _, p := range plans {
			if p.fresh != nil {
				_ = p.fresh.eng.Close()
			}
		}
		metrics.close()
		return s.reject(fmt.Errorf("%w: %w", ErrReloadRejected, ErrStopped))
	}
	kept := make(map[*service]bool, len(plans))
	services := make([]*service, 0, len(plans))
	for _, p := range plans {
		svc := p.svc
		kept[svc] = true
		services = append(services, svc)
		if p.added {
			svc.cur = p.fresh
			s.runPolicy(svc)
			s.watch(p.fresh)
			s.log.Info("service added", "service", p.cfg.Name, "address", p.fresh.addr.String())
			continue
		}
		svc.policy.Apply(p.cfg)
		svc.tunables.Store(p.tun)
		svc.cfg.Store(p.cfg)
		if p.renamed != "" {
			s.log.Info("service renamed; its listener and connections are kept", "service", p.cfg.Name, "previous", p.renamed)
		}
		switch {
		case p.fresh != nil:
			if svc.cur != nil {
				s.retire(svc.cur, -1)
			}
			svc.cur = p.fresh
			s.watch(p.fresh)
		case p.backlog && svc.cur != nil:
			svc.cur.backlog = p.cfg.Runtime.TCPBacklog
		}
	}
	drain := next.Runtime.DrainTimeout
	for _, o := range olds {
		if kept[o] {
			continue
		}
		o.removed = true
		s.gone[o] = struct{}{}
		if o.cur != nil {
			s.retire(o.cur, drain)
			o.cur = nil
		}
		// Listeners left draining by an earlier move get the same deadline.
		for l := range o.draining {
			if l.deadline == nil {
				l.deadline = time.AfterFunc(drain, l.cut)
			}
		}
		if len(o.draining) == 0 {
			delete(s.gone, o)
			if o.stopRun != nil {
				o.stopRun()
			}
		}
		s.log.Info("service removed; it no longer accepts and its connections drain", "service", o.config().Name, "drain_timeout_ms", drain.Milliseconds())
	}
	s.services = services
	s.snap = next
	if s.opts.Level != nil {
		s.opts.Level.Set(next.LogLevel)
	}
	if next.Runtime.MetricsAddress != s.metrics.address() {
		s.metrics.close()
		s.metrics = metrics
	}
	r := &ReloadResult{OK: true, Time: time.Now(), Changes: changes}
	s.last = r
	s.mu.Unlock()
	s.reloads.Add(1)
	s.log.Info("reloaded", "path", next.Path, "changes", len(changes))
	for _, c := range changes {
		s.log.Info("config change", "change", c)
	}
	s.statesAfterReload()
	return r, nil
}

// prepare does everything of a reload that can fail, in this order: match
// the new services to the running ones, check and resolve each, bind every
// new listener, change backlogs, bind the metrics listener. It returns what
// it did so far even on error: the caller closes the fresh listeners and
// runs the reverts.
func (s *Server) prepare(ctx context.Context, next *config.Snapshot, olds []*service, now map[*service]running) (plans []*planned, reverts []func(), metrics *metricsListener, err error) {
	if len(next.Services) == 0 {
		return nil, nil, nil, errors.New("the config has no service")
	}
	impl, err := s.engineFor(next)
	if err != nil {
		return nil, nil, nil, err
	}
	byName := make(map[string]*service, len(olds))
	for _, o := range olds {
		byName[o.config().Name] = o
	}
	taken := make(map[*service]bool, len(olds))
	plans = make([]*planned, len(next.Services))
	for i := range next.Services {
		cfg := &next.Services[i]
		p := &planned{cfg: cfg}
		plans[i] = p
		if _, err := impl.factory(cfg.Protocol); err != nil {
			return plans, nil, nil, fmt.Errorf("service %s: %w", cfg.Name, err)
		}
		if p.addr, err = ServiceListenAddr(ctx, cfg); err != nil {
			return plans, nil, nil, fmt.Errorf("service %s: %w", cfg.Name, err)
		}
		if p.tun, err = tunables(cfg); err != nil {
			return plans, nil, nil, fmt.Errorf("service %s: %w", cfg.Name, err)
		}
		if o := byName[cfg.Name]; o != nil {
			p.svc, taken[o] = o, true
		}
	}
	// A removed service and an added one on the same address and protocol
	// are a rename: the listener, its connections and the policy stay.
	for _, p := range plans {
		if p.svc != nil {
			continue
		}
		for _, o := range olds {
			r := now[o]
			if !taken[o] && r.l != nil && r.proto == p.cfg.Protocol && keepsAddr(p.addr, r.addr) {
				p.svc, p.renamed, taken[o] = o, o.config().Name, true
				break
			}
		}
	}
	// Every new listener is bound before anything changes, in config order.
	var added []*service
	for _, p := range plans {
		if p.svc == nil {
			svc, err := s.newService(p.cfg)
			if err != nil {
				return plans, nil, nil, err
			}
			p.svc, p.added = svc, true
			added = append(added, svc)
		}
	}
	resolveAll(ctx, added)
	for _, p := range plans {
		backlog := p.cfg.Runtime.TCPBacklog
		if p.added {
			if p.fresh, err = s.startEngine(ctx, p.svc, p.cfg.Protocol, impl, p.addr, backlog); err != nil {
				return plans, nil, nil, fmt.Errorf("service %s: %w", p.cfg.Name, explainInUse(err, p.cfg.Protocol, p.addr, olds, now))
			}
			continue
		}
		r := now[p.svc]
		switch {
		case r.l == nil || !keepsAddr(p.addr, r.addr) || impl.Name != r.impl || p.cfg.Protocol != r.proto:
			if r.l != nil && keepsAddr(p.addr, r.addr) {
				what := fmt.Sprintf("runtime.engine %s -> %s", r.impl, impl.Name)
				if p.cfg.Protocol != r.proto {
					what = fmt.Sprintf("protocol %s -> %s", r.proto, p.cfg.Protocol)
				}
				return plans, nil, nil, fmt.Errorf("service %s: %s on the same address needs a restart", p.cfg.Name, what)
			}
			if p.fresh, err = s.startEngine(ctx, p.svc, p.cfg.Protocol, impl, p.addr, backlog); err != nil {
				return plans, nil, nil, fmt.Errorf("service %s: %w", p.cfg.Name, explainInUse(err, p.cfg.Protocol, p.addr, olds, now))
			}
		case backlog != r.backlog:
			p.backlog = true
		}
	}
	for _, p := range plans {
		if !p.backlog {
			continue
		}
		r := now[p.svc]
		if err := setBacklog(r.l.eng, p.cfg.Runtime.TCPBacklog); err != nil {
			return plans, reverts, nil, fmt.Errorf("service %s: %w", p.cfg.Name, err)
		}
		reverts = append(reverts, func() { _ = setBacklog(r.l.eng, r.backlog) })
	}
	if next.Runtime.MetricsAddress != s.metrics.address() {
		if metrics, err = s.listenMetrics(next.Runtime.MetricsAddress); err != nil {
			return plans, reverts, nil, err
		}
	}
	return plans, reverts, metrics, nil
}

// keepsAddr reports whether a service configured to listen on want keeps
// the listener bound to cur: the same address, where port 0 (tests) keeps
// the port it was given.
func keepsAddr(want, cur netip.AddrPort) bool {
	if want.Port() == 0 {
		want = netip.AddrPortFrom(want.Addr(), cur.Port())
	}
	return want == cur
}

// explainInUse adds why a bind of protocol proto onto addr failed when bal
// itself holds it: a reload binds every new address before it closes an
// old one (a UDP service's old socket is held until its flows end).
func explainInUse(err error, proto config.Protocol, addr netip.AddrPort, olds []*service, now map[*service]running) error {
	if !errors.Is(err, engine.ErrAddrInUse) {
		return err
	}
	var holders []string
	for _, o := range olds {
		if r := now[o]; r.l != nil && r.proto == proto && (r.addr == addr || overlaps(addr, r.addr)) {
			holders = append(holders, fmt.Sprintf("service %s on %s", o.config().Name, r.addr))
		}
	}
	if len(holders) == 0 {
		return err
	}
	return fmt.Errorf("listen %s: %w: bal's own listener (%s) holds it, and a reload binds every new address before it closes an old one; use another port, reload in two steps, or restart bal",
		addr, engine.ErrAddrInUse, strings.Join(holders, ", "))
}

// overlaps reports whether binding a while b is bound must fail whatever
// holds b: the same port, and one of them is a wildcard address.
func overlaps(a, b netip.AddrPort) bool {
	return a.Port() == b.Port() && (a.Addr().IsUnspecified() || b.Addr().IsUnspecified())
}

// backlogSetter is implemented by engines that can change the listen(2)
// backlog of their live sockets.
type backlogSetter interface {
	SetBacklog(n int) error
}

func setBacklog(e engine.Engine, n int) error {
	bs, ok := e.(backlogSetter)
	if !ok {
		return errors.New("runtime.tcp_backlog cannot change on this engine without a restart")
	}
	return bs.SetBacklog(n)
}
