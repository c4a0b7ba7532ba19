// Package server is one running bal: a config snapshot, the services it
// lists — each with the policy built from it, its engine tunables and the
// engine listening for it — and the reloads that change them. It is what
// `bal start` runs and what the control socket asks about.
//
// A reload swaps each kept service's policy config and engine tunables
// atomically; it never restarts an engine whose address stays. Services are
// matched by name, and a removed service and an added one on the same
// address are a rename that keeps the listener. Every new address (an added
// service, or a kept one that moved) is bound before anything changes: if
// one bind fails the whole reload is rejected, the listeners it bound are
// closed and the old config keeps serving. A kept service's old listener
// then drains without a deadline, so its connections keep working until
// they end on their own; a removed service stops accepting at once and its
// connections get runtime.drain_timeout_ms before they are closed
// (docs/design.md#reload).
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/limits"
	"github.com/bal-lb/bal/engine/policy"
)

// Sentinel errors.
var (
	// ErrReloadRejected wraps every reason a reload was refused.
	ErrReloadRejected = errors.New("reload rejected")
	// ErrStopped: the server was shut down.
	ErrStopped = errors.New("server stopped")
	// ErrNoEngines: Options.Engines was not given; Start fails with it.
	ErrNoEngines = errors.New("server: Options.Engines is required (the composition root maps runtime.engine to an engine)")
	// ErrUDPUnsupported: a service has protocol udp and the engine in use
	// has no UDP factory (Engine.NewUDP).
	ErrUDPUnsupported = errors.New("protocol udp is not served by this engine")
	// ErrNotStarted: Reload was called before Start.
	ErrNotStarted = errors.New("server not started")
)

// Engine is one engine implementation, as Options.Engines names it for a
// runtime.engine value.
type Engine struct {
	// Name is the concrete engine ("gnet", "std"): status, metrics and logs
	// report it, and a reload that changes it needs a restart.
	Name string
	// New builds the engine of a TCP service.
	New engine.Factory
	// NewUDP builds the engine of a UDP service. Nil while the engine has
	// none: a UDP service is then refused at Start and Reload with
	// ErrUDPUnsupported, naming the service.
	NewUDP engine.Factory
	// Cost is its use of descriptors (the engine package states it);
	// Status reports Cost.PerConn.
	Cost limits.Cost
}

// factory is the engine's factory for a service of protocol p.
func (e Engine) factory(p config.Protocol) (engine.Factory, error) {
	if p == config.UDP {
		if e.NewUDP == nil {
			return nil, fmt.Errorf("%w (engine %s)", ErrUDPUnsupported, e.Name)
		}
		return e.NewUDP, nil
	}
	return e.New, nil
}

// Options configure a Server. Engines is required; the rest may be zero.
type Options struct {
	// Logger receives the server's, the policies' and the engines' logs.
	Logger *slog.Logger
	// Level, when set, is switched to each snapshot's log_level.
	Level *slog.LevelVar
	// Engines maps a runtime.engine value ("auto", "gnet", "std") to the
	// engine to run, or an error that rejects the start or the reload.
	// cmd/bal supplies it: the server links no engine of its own.
	Engines func(runtimeEngine string) (Engine, error)
	// Policy options (tests inject clocks and resolvers); Logger is filled in.
	Policy policy.Options
	// Restarts is how many times in RestartWindow a service's listener
	// that died on its own is restarted before Fatal fires; 0 means 5 per
	// minute.
	Restarts      int
	RestartWindow time.Duration
	// Metrics builds the GET /metrics handler over the server's live
	// status (cmd/bal passes engine/metrics.Handler). When set,
	// runtime.metrics_address gets an HTTP listener serving it, rebound on
	// reload, and MetricsHandler returns it for the control socket.
	Metrics func(status func() Status) http.Handler
	// Web, when set, serves every path but /metrics on
	// runtime.metrics_address: the status page and the status JSON it
	// reads (cmd/bal passes the control package's read-only handler).
	Web http.Handler
	// StatePath is the state file holding the backends' admin states
	// ($BAL_HOME/state.json): read at Start, written on every change and
	// after reloads. "" keeps the states in memory only.
	StatePath string
}

// ReloadResult is the outcome of the latest reload.
type ReloadResult struct {
	OK      bool
	Time    time.Time
	Error   string   // with its cause chain; "" when OK
	Changes []string // what changed; empty when nothing or when rejected
}

// Server runs one bal instance: every service of its snapshot.
type Server struct {
	opts    Options
	log     *slog.Logger
	started time.Time

	// reloadMu serialises whole reloads, from reading the file to the
	// swap: a reload that read the file earlier never lands after one
	// that read it later (SIGHUP and the control socket's POST /reload
	// run concurrently).
	reloadMu sync.Mutex
	// mu guards the fields below and every service's mutable fields (held
	// briefly; whole reloads take reloadMu).
	mu       sync.Mutex
	snap     *config.Snapshot
	services []*service            // the snapshot's, in config order
	gone     map[*service]struct{} // removed by a reload, still draining
	closed   bool
	last     *ReloadResult
	initErr  error // a service New could not prepare; Start returns it

	reloads, reloadFailures atomic.Uint64
	metrics                 *metricsListener
	metricsH                http.Handler // built by Options.Metrics; nil without

	// stateMu serialises admin state changes and the state file's writes
	// (taken after mu when both are needed, never before); persisted is
	// what the file holds (nil: not read yet), saveErr the last write
	// error logged.
	stateMu          sync.Mutex
	persisted        map[stateKey]string
	saveErr          string
	resetUnsupported sync.Once

	bg     sync.WaitGroup
	bgctx  context.Context // parent of every policy's Run; ends at Shutdown
	cancel context.CancelFunc
	fatal  chan error
}

// New prepares a server for snap; nothing runs until Start.
func New(snap *config.Snapshot, o Options) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Restarts <= 0 {
		o.Restarts = 5
	}
	if o.RestartWindow <= 0 {
		o.RestartWindow = time.Minute
	}
	if o.Level != nil {
		o.Level.Set(snap.LogLevel)
	}
	bgctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		opts:   o,
		log:    o.Logger,
		snap:   snap,
		gone:   make(map[*service]struct{}),
		bgctx:  bgctx,
		cancel: cancel,
		fatal:  make(chan error, 1),
	}
	for i := range snap.Services {
		svc, err := s.newService(&snap.Services[i])
		if err != nil && s.initErr == nil {
			s.initErr = err
		}
		s.services = append(s.services, svc)
	}
	if o.Metrics != nil {
		s.metricsH = o.Metrics(s.Status)
	}
	return s
}

// engineFor is the engine Options.Engines names for snap's runtime.engine.
func (s *Server) engineFor(snap *config.Snapshot) (Engine, error) {
	if s.opts.Engines == nil {
		return Engine{}, ErrNoEngines
	}
	e, err := s.opts.Engines(snap.Runtime.Engine)
	if err == nil && e.New == nil {
		err = fmt.Errorf("runtime.engine %q: no factory for engine %q", snap.Runtime.Engine, e.Name)
	}
	return e, err
}

// startEngine builds, probes and starts an engine of protocol proto for
// svc on addr. Its errors name the address.
func (s *Server) startEngine(ctx context.Context, svc *service, proto config.Protocol, impl Engine, addr netip.AddrPort, backlog int) (*listener, error) {
	newEngine, err := impl.factory(proto)
	if err != nil {
		return nil, err
	}
	// A bind without SO_REUSEPORT first: a port held by anyone, another
	// bal with SO_REUSEPORT included, is "in use" (docs/design.md#relay-semantics).
	probe := engine.ProbeBind
	if proto == config.UDP {
		probe = engine.ProbeBindUDP
	}
	if err := probe(addr); err != nil {
		return nil, err
	}
	eng, err := newEngine(engine.Options{
		Listen:   addr,
		Backlog:  backlog,
		Tunables: svc.tunables,
		Logger:   s.log.With("service", svc.config().Name),
	}, svc.policy)
	if err != nil {
		return nil, fmt.Errorf("listen %s: engine %s: %w", addr, impl.Name, err)
	}
	if err := eng.Start(ctx); err != nil {
		_ = eng.Close()
		return nil, err
	}
	// The engine logs "listening" itself.
	return &listener{svc: svc, eng: eng, impl: impl, addr: eng.Addr(), backlog: backlog, stop: make(chan struct{})}, nil
}

// Start binds every service's listener, in config order, and starts the
// background work (health checks, protection timers, access logs). If a
// service cannot be served (a bind fails, protocol udp without a UDP
// engine, no Options.Engines: ErrNoEngines) it fails naming the service and
// address, leaving nothing running.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return ErrStopped
	case s.opts.Engines == nil:
		return ErrNoEngines
	case s.initErr != nil:
		return s.initErr
	case len(s.services) == 0:
		return errors.New("server: the snapshot has no service")
	case !s.started.IsZero():
		return errors.New("server: already started")
	}
	impl, err := s.engineFor(s.snap)
	if err != nil {
		return err
	}
	// Every service is checked before any is bound.
	addrs := make([]netip.AddrPort, len(s.services))
	for i, svc := range s.services {
		if _, err := impl.factory(svc.config().Protocol); err != nil {
			return fmt.Errorf("service %s: %w", svc.config().Name, err)
		}
		if addrs[i], err = ServiceListenAddr(ctx, svc.config()); err != nil {
			return fmt.Errorf("service %s: %w", svc.config().Name, err)
		}
	}
	// Hostname backends get an address before the first client arrives;
	// failures are counted by the health checks, never fatal.
	resolveAll(ctx, s.services)
	// The operator's drains and maintenances hold before the first client.
	s.restoreStates(s.services)
	bound := make([]*listener, 0, len(s.services))
	for i, svc := range s.services {
		l, err := s.startEngine(ctx, svc, svc.config().Protocol, impl, addrs[i], svc.config().Runtime.TCPBacklog)
		if err != nil {
			closeAll(bound)
			return fmt.Errorf("service %s: %w", svc.config().Name, err)
		}
		bound = append(bound, l)
	}
	if s.metrics, err = s.listenMetrics(s.snap.Runtime.MetricsAddress); err != nil {
		closeAll(bound)
		return err
	}
	s.started = time.Now()
	for i, svc := range s.services {
		svc.cur = bound[i]
		s.runPolicy(svc)
		s.watch(bound[i])
	}
	s.saveStates(s.services)
	return nil
}

// resolveAll resolves the services' hostname backends in parallel, each
// within its health-check timeout.
func resolveAll(ctx context.Context, svcs []*service) {
	var wg sync.WaitGroup
	for _, svc := range svcs {
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, svc.config().Runtime.HealthCheckTimeout)
			defer cancel()
			_ = svc.policy.Resolve(rctx)
		})
	}
	wg.Wait()
}

func closeAll(ls []*listener) {
	for _, l := range ls {
		_ = l.eng.Close()
	}
}

// runPolicy starts svc's policy background work until the service is
// removed (and drained) or the server stops. Called with mu held.
func (s *Server) runPolicy(svc *service) {
	ctx, stop := context.WithCancel(s.bgctx)
	svc.stopRun = stop
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		svc.policy.Run(ctx)
	}()
}

// watch restarts l's engine if it dies on its own (gnet stops on some
// accept errors); past the service's restart budget it reports on Fatal.
func (s *Server) watch(l *listener) {
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		var err error
		select {
		case err = <-l.eng.Done():
		case <-l.stop:
			return
		}
		name := l.svc.config().Name
		s.log.Error("listener died", "service", name, "address", l.addr.String(), "engine", l.impl.Name, "error", err)
		if rerr := s.restart(l); rerr != nil {
			s.log.Error("listener restart failed; exiting", "service", name, "address", l.addr.String(), "error", rerr)
			select {
			case s.fatal <- fmt.Errorf("service %s: listener %s died (%w) and could not be restarted: %w", name, l.addr, err, rerr):
			default:
			}
		}
	}()
}

func (s *Server) restart(dead *listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	svc := dead.svc
	if s.closed || svc.removed || svc.cur != dead {
		return nil // retired, removed or shutting down: nothing to restart
	}
	now := time.Now()
	recent := svc.restarts[:0]
	for _, t := range svc.restarts {
		if now.Sub(t) < s.opts.RestartWindow {
			recent = append(recent, t)
		}
	}
	svc.restarts = append(recent, now)
	if len(svc.restarts) > s.opts.Restarts {
		return fmt.Errorf("%d restarts within %v", len(svc.restarts)-1, s.opts.RestartWindow)
	}
	// The dead engine's connections may still be relaying: let them end.
	s.retire(dead, -1)
	svc.cur = nil
	impl, err := s.engineFor(s.snap)
	if err != nil {
		return err
	}
	var l *listener
	for try := range 20 { // the dead engine may still be releasing the port
		if l, err = s.startEngine(context.Background(), svc, svc.config().Protocol, impl, dead.addr, dead.backlog); err == nil {
			break
		}
		time.Sleep(time.Duration(try+1) * 25 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	svc.cur = l
	s.watch(l)
	s.log.Warn("listener restarted", "service", svc.config().Name, "address", l.addr.String(), "engine", impl.Name)
	return nil
}

// retire stops l accepting and drains it in the background: without a
// deadline when within < 0 (Shutdown imposes one), else closing what is
// left after within. Called with mu held.
func (s *Server) retire(l *listener, within time.Duration) {
	close(l.stop)
	svc := l.svc
	svc.draining[l] = struct{}{}
	ctx, cut := context.WithCancel(context.Background())
	l.cut = cut
	if within >= 0 {
		l.deadline = time.AfterFunc(within, cut)
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		_ = l.eng.Drain(ctx)
		cut()
		s.mu.Lock()
		if l.deadline != nil {
			l.deadline.Stop()
		}
		delete(svc.draining, l)
		svc.retired.add(l.eng.Stats())
		var stop context.CancelFunc
		if svc.removed && len(svc.draining) == 0 {
			delete(s.gone, svc)
			stop = svc.stopRun
		}
		s.mu.Unlock()
		if stop != nil {
			stop()
		}
		s.log.Info("old listener drained", "service", svc.config().Name, "address", l.addr.String())
	}()
}

// Fatal yields an error when the server can no longer serve (a listener died
// and could not be restarted). The process should exit non-zero.
func (s *Server) Fatal() <-chan error { return s.fatal }

// Addr is the address the first service's listener is bound to.
func (s *Server) Addr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.services) == 0 || s.services[0].cur == nil {
		return netip.AddrPort{}
	}
	return s.services[0].cur.addr
}

// Snapshot returns the config in force.
func (s *Server) Snapshot() *config.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}

// Shutdown stops accepting on every service's listeners at once, lets open
// connections finish until ctx is done, closes the rest, then stops the
// background work.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.metrics.close()
	var ls []*listener
	collect := func(svc *service) {
		if svc.cur != nil {
			close(svc.cur.stop)
			ls = append(ls, svc.cur)
		}
		for l := range svc.draining {
			ls = append(ls, l)
		}
	}
	for _, svc := range s.services {
		collect(svc)
	}
	for svc := range s.gone {
		collect(svc)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Go(func() { _ = l.eng.Drain(ctx) })
	}
	wg.Wait()
	s.cancel()
	s.bg.Wait()
	return nil
}

// Close closes every connection at once and stops.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return s.Shutdown(ctx)
}
