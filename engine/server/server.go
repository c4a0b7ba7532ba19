// Package server is one running bal: a config snapshot, the policy built from
// it, the engine listening for it, and the reloads that change them. It is
// what `bal start` runs and what the control socket asks about.
//
// A reload swaps the policy's snapshot and the engine tunables atomically;
// it never restarts an engine. A changed listen address (or engine) starts a
// new engine first — if that bind fails the reload is rejected and nothing
// changes — and then drains the old one without a deadline, so connections
// accepted on the old address keep working until they end on their own.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
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
)

// Engine is one engine implementation, as Options.Engines names it for a
// runtime.engine value.
type Engine struct {
	// Name is the concrete engine ("gnet", "std"): status, metrics and logs
	// report it, and a reload that changes it needs a restart.
	Name string
	// New builds the engine.
	New engine.Factory
	// Cost is its use of descriptors (the engine package states it);
	// Status reports Cost.PerConn.
	Cost limits.Cost
}

// Options configure a Server. Engines is required; the rest may be zero.
type Options struct {
	// Logger receives the server's, the policy's and the engines' logs.
	Logger *slog.Logger
	// Level, when set, is switched to each snapshot's log_level.
	Level *slog.LevelVar
	// Engines maps a runtime.engine value ("auto", "gnet", "std") to the
	// engine to run, or an error that rejects the start or the reload.
	// cmd/bal supplies it: the server links no engine of its own.
	Engines func(runtimeEngine string) (Engine, error)
	// Policy options (tests inject clocks and resolvers); Logger is filled in.
	Policy policy.Options
	// Restarts is how many times in RestartWindow a listener that died on
	// its own is restarted before Fatal fires; 0 means 5 per minute.
	Restarts      int
	RestartWindow time.Duration
	// Metrics builds the GET /metrics handler over the server's live
	// status (cmd/bal passes engine/metrics.Handler). When set,
	// runtime.metrics_address gets an HTTP listener serving it, rebound on
	// reload, and MetricsHandler returns it for the control socket.
	Metrics func(status func() Status) http.Handler
}

// ReloadResult is the outcome of the latest reload.
type ReloadResult struct {
	OK      bool
	Time    time.Time
	Error   string   // with its cause chain; "" when OK
	Changes []string // what changed; empty when nothing or when rejected
}

// listener is one engine on one address.
type listener struct {
	eng     engine.Engine
	impl    Engine // which engine it is
	addr    netip.AddrPort
	backlog int
	stop    chan struct{} // closed when we retire it (no more restarts)
}

// Server runs one bal instance.
type Server struct {
	opts     Options
	log      *slog.Logger
	policy   *policy.Policy
	tunables *engine.TunableStore
	started  time.Time

	// reloadMu serialises whole reloads, from reading the file to the
	// swap: a reload that read the file earlier never lands after one
	// that read it later (SIGHUP and the control socket's POST /reload
	// run concurrently).
	reloadMu sync.Mutex
	// mu guards the fields below (held briefly; whole reloads take reloadMu).
	mu       sync.Mutex
	snap     *config.Snapshot
	cur      *listener
	draining map[*listener]struct{}
	retired  engine.Stats // bytes and counts of engines that are gone
	closed   bool
	last     *ReloadResult
	restarts []time.Time

	reloads, reloadFailures atomic.Uint64
	metrics                 *metricsListener
	metricsH                http.Handler // built by Options.Metrics; nil without

	bg     sync.WaitGroup
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
	po := o.Policy
	po.Logger = o.Logger
	if o.Level != nil {
		o.Level.Set(snap.LogLevel)
	}
	s := &Server{
		opts:     o,
		log:      o.Logger,
		policy:   policy.New(&snap.Services[0], po),
		tunables: engine.NewTunableStore(tunables(snap)),
		snap:     snap,
		draining: make(map[*listener]struct{}),
		fatal:    make(chan error, 1),
	}
	if o.Metrics != nil {
		s.metricsH = o.Metrics(s.Status)
	}
	return s
}

func tunables(s *config.Snapshot) engine.Tunables {
	t := engine.Tunables{
		ConnectTimeout: s.Runtime.BackendConnectTimeout,
		IdleTimeout:    s.Runtime.ConnectionIdleTimeout,
	}
	switch s.Runtime.ProxyProtocol {
	case config.ProxyV1:
		t.ProxyProtocol = engine.ProxyV1
	case config.ProxyV2:
		t.ProxyProtocol = engine.ProxyV2
	}
	return t
}

// ListenAddr resolves a snapshot's bind_address:port to one address: IP
// literals as they are, a hostname to its first address.
func ListenAddr(ctx context.Context, s *config.Snapshot) (netip.AddrPort, error) {
	port := uint16(s.Port)
	if a, err := netip.ParseAddr(s.BindAddress); err == nil {
		return netip.AddrPortFrom(a.Unmap(), port), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", s.BindAddress)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bind_address %q: %w", s.BindAddress, err)
	}
	if len(ips) == 0 {
		return netip.AddrPort{}, fmt.Errorf("bind_address %q: no address", s.BindAddress)
	}
	return netip.AddrPortFrom(ips[0].Unmap(), port), nil
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

// startListener builds, probes and starts an engine for snap.
func (s *Server) startListener(ctx context.Context, snap *config.Snapshot) (*listener, error) {
	impl, err := s.engineFor(snap)
	if err != nil {
		return nil, err
	}
	addr, err := ListenAddr(ctx, snap)
	if err != nil {
		return nil, err
	}
	return s.startEngine(ctx, impl, addr, snap.Runtime.TCPBacklog)
}

func (s *Server) startEngine(ctx context.Context, impl Engine, addr netip.AddrPort, backlog int) (*listener, error) {
	// A bind without SO_REUSEPORT first: a port held by anyone, another
	// bal with SO_REUSEPORT included, is "in use" (docs/design.md#relay-semantics).
	if err := engine.ProbeBind(addr); err != nil {
		return nil, err
	}
	eng, err := impl.New(engine.Options{
		Listen:   addr,
		Backlog:  backlog,
		Tunables: s.tunables,
		Logger:   s.log,
	}, s.policy)
	if err != nil {
		return nil, fmt.Errorf("engine %s: %w", impl.Name, err)
	}
	if err := eng.Start(ctx); err != nil {
		_ = eng.Close()
		return nil, err
	}
	// The engine logs "listening" itself.
	return &listener{eng: eng, impl: impl, addr: eng.Addr(), backlog: backlog, stop: make(chan struct{})}, nil
}

// Start binds the listener and starts the background work (health checks,
// protection timer, access log). It fails, leaving nothing running, when the
// listener cannot be bound, and with ErrNoEngines without Options.Engines.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrStopped
	}
	if s.opts.Engines == nil {
		return ErrNoEngines
	}
	// Hostname backends get an address before the first client arrives;
	// failures are counted by the health checks, never fatal.
	rctx, cancel := context.WithTimeout(ctx, s.snap.Runtime.HealthCheckTimeout)
	_ = s.policy.Resolve(rctx)
	cancel()
	l, err := s.startListener(ctx, s.snap)
	if err != nil {
		return err
	}
	if s.metrics, err = s.listenMetrics(s.snap.Runtime.MetricsAddress); err != nil {
		_ = l.eng.Close()
		return err
	}
	s.cur = l
	s.started = time.Now()
	bgctx, stop := context.WithCancel(context.Background())
	s.cancel = stop
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.policy.Run(bgctx)
	}()
	s.watch(l)
	return nil
}

// watch restarts l's engine if it dies on its own (gnet stops on some
// accept errors); past the restart budget it reports on Fatal.
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
		s.log.Error("listener died", "address", l.addr.String(), "engine", l.impl.Name, "error", err)
		if rerr := s.restart(l); rerr != nil {
			s.log.Error("listener restart failed; exiting", "address", l.addr.String(), "error", rerr)
			select {
			case s.fatal <- fmt.Errorf("listener %s died (%w) and could not be restarted: %w", l.addr, err, rerr):
			default:
			}
		}
	}()
}

func (s *Server) restart(dead *listener) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.cur != dead {
		return nil // retired or shutting down: nothing to restart
	}
	now := time.Now()
	recent := s.restarts[:0]
	for _, t := range s.restarts {
		if now.Sub(t) < s.opts.RestartWindow {
			recent = append(recent, t)
		}
	}
	s.restarts = append(recent, now)
	if len(s.restarts) > s.opts.Restarts {
		return fmt.Errorf("%d restarts within %v", len(s.restarts)-1, s.opts.RestartWindow)
	}
	// The dead engine's connections may still be relaying: let them end.
	s.retire(dead)
	impl, err := s.engineFor(s.snap)
	if err != nil {
		return err
	}
	var l *listener
	for try := range 20 { // the dead engine may still be releasing the port
		if l, err = s.startEngine(context.Background(), impl, dead.addr, dead.backlog); err == nil {
			break
		}
		time.Sleep(time.Duration(try+1) * 25 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	s.cur = l
	s.watch(l)
	s.log.Warn("listener restarted", "address", l.addr.String(), "engine", impl.Name)
	return nil
}

// retire drains l in the background without a deadline (Shutdown imposes
// one). Called with mu held.
func (s *Server) retire(l *listener) {
	close(l.stop)
	s.draining[l] = struct{}{}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		_ = l.eng.Drain(context.Background())
		s.mu.Lock()
		delete(s.draining, l)
		st := l.eng.Stats()
		s.retired.Accepted += st.Accepted
		s.retired.BytesIn += st.BytesIn
		s.retired.BytesOut += st.BytesOut
		s.mu.Unlock()
		s.log.Info("old listener drained", "address", l.addr.String())
	}()
}

// Fatal yields an error when the server can no longer serve (a listener died
// and could not be restarted). The process should exit non-zero.
func (s *Server) Fatal() <-chan error { return s.fatal }

// Addr is the address the current listener is bound to.
func (s *Server) Addr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur == nil {
		return netip.AddrPort{}
	}
	return s.cur.addr
}

// Snapshot returns the config in force.
func (s *Server) Snapshot() *config.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}

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

// Reload applies next live (docs/design.md#reload). On any error nothing changes and the
// error wraps ErrReloadRejected.
func (s *Server) Reload(ctx context.Context, next *config.Snapshot) (*ReloadResult, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	return s.reload(ctx, next)
}

// reload is Reload with reloadMu held.
func (s *Server) reload(ctx context.Context, next *config.Snapshot) (*ReloadResult, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.reject(fmt.Errorf("%w: %w", ErrReloadRejected, ErrStopped))
	}
	prev, cur := s.snap, s.cur
	changes := next.Changes(prev)

	// A new listener is bound before anything else changes.
	var fresh *listener
	impl, err := s.engineFor(next)
	var addr netip.AddrPort
	if err == nil {
		addr, err = ListenAddr(ctx, next)
	}
	if err == nil && cur != nil {
		want := addr
		if want.Port() == 0 { // port 0 (tests): keep the bound port
			want = netip.AddrPortFrom(want.Addr(), cur.addr.Port())
		}
		switch {
		case want != cur.addr || impl.Name != cur.impl.Name:
			if want == cur.addr {
				err = fmt.Errorf("runtime.engine %s -> %s on the same address needs a restart", cur.impl.Name, impl.Name)
				break
			}
			fresh, err = s.startEngine(ctx, impl, addr, next.Runtime.TCPBacklog)
			if errors.Is(err, engine.ErrAddrInUse) && overlaps(want, cur.addr) {
				err = fmt.Errorf("listen %s: %w: it overlaps bal's own listener on %s, and a reload binds the new address before it closes the old one; change the port too, or restart bal", want, engine.ErrAddrInUse, cur.addr)
			}
		case next.Runtime.TCPBacklog != cur.backlog:
			err = setBacklog(cur.eng, next.Runtime.TCPBacklog)
			if err == nil {
				cur.backlog = next.Runtime.TCPBacklog
			}
		}
	}
	var metrics *metricsListener
	if err == nil && next.Runtime.MetricsAddress != s.metrics.address() {
		metrics, err = s.listenMetrics(next.Runtime.MetricsAddress)
	}
	if err != nil {
		if fresh != nil {
			_ = fresh.eng.Close()
		}
		s.mu.Unlock()
		return s.reject(fmt.Errorf("%w: %w", ErrReloadRejected, err))
	}

	// Commit: everything below cannot fail.
	s.policy.Apply(&next.Services[0])
	s.tunables.Store(tunables(next))
	if s.opts.Level != nil {
		s.opts.Level.Set(next.LogLevel)
	}
	s.snap = next
	if fresh != nil {
		s.retire(cur)
		s.cur = fresh
		s.watch(fresh)
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
	return r, nil
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

// Shutdown stops accepting on every listener at once, lets open connections
// finish until ctx is done, closes the rest, then stops the background work.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.metrics.close()
	ls := make([]*listener, 0, len(s.draining)+1)
	if s.cur != nil {
		close(s.cur.stop)
		ls = append(ls, s.cur)
	}
	for l := range s.draining {
		ls = append(ls, l)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = l.eng.Drain(ctx)
		}()
	}
	wg.Wait()
	if s.cancel != nil {
		s.cancel()
	}
	s.bg.Wait()
	return nil
}

// Close closes every connection at once and stops.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return s.Shutdown(ctx)
}

// Status is the live state of a running server.
type Status struct {
	PID            int
	ConfigPath     string
	BindAddress    string
	Port           int // as configured
	Listen         netip.AddrPort
	Method         string
	Engine         string
	FDsPerConn     int // descriptors one connection holds on Engine (its Cost.PerConn)
	Started        time.Time
	Policy         policy.Status
	Accepted       uint64 // connections admitted by the engines (Policy.Rejected counts refusals)
	BytesIn        uint64 // client→backend bytes, live
	BytesOut       uint64 // backend→client bytes, live
	Draining       int    // old listeners still finishing connections
	Goroutines     int    // goroutines of the process now (leak checks)
	Reloads        uint64
	ReloadFailures uint64
	LastReload     *ReloadResult // nil before the first reload
}

// Status returns the live state.
func (s *Server) Status() Status {
	s.mu.Lock()
	st := Status{
		PID:            os.Getpid(),
		ConfigPath:     s.snap.Path,
		BindAddress:    s.snap.BindAddress,
		Port:           s.snap.Port,
		Method:         string(s.snap.Method),
		Started:        s.started,
		Draining:       len(s.draining),
		Goroutines:     runtime.NumGoroutine(),
		Reloads:        s.reloads.Load(),
		ReloadFailures: s.reloadFailures.Load(),
		Accepted:       s.retired.Accepted,
		BytesIn:        s.retired.BytesIn,
		BytesOut:       s.retired.BytesOut,
	}
	if s.last != nil {
		r := *s.last
		st.LastReload = &r
	}
	engines := make([]engine.Engine, 0, len(s.draining)+1)
	if s.cur != nil {
		st.Listen, st.Engine, st.FDsPerConn = s.cur.addr, s.cur.impl.Name, s.cur.impl.Cost.PerConn
		engines = append(engines, s.cur.eng)
	}
	for l := range s.draining {
		engines = append(engines, l.eng)
	}
	s.mu.Unlock()
	for _, e := range engines {
		es := e.Stats()
		st.Accepted += es.Accepted
		st.BytesIn += es.BytesIn
		st.BytesOut += es.BytesOut
	}
	st.Policy = s.policy.Status()
	return st
}
