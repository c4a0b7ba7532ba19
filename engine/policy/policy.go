package policy

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/access"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/health"
	"github.com/bal-lb/bal/engine/pool"
	"github.com/bal-lb/bal/engine/protect"
)

// Options configure a Policy; the zero value uses the defaults.
type Options struct {
	// Logger receives transitions (backend down/up, protection mode),
	// reload changes and the access log; nil discards.
	Logger *slog.Logger
	// Now is the clock (tests inject a fake one); nil means time.Now.
	Now func() time.Time
	// Resolver resolves hostname backends; nil means net.DefaultResolver.
	Resolver health.Resolver
	// HealthDial replaces the health checks' dialer (tests); nil means a
	// net.Dialer.
	HealthDial health.DialFunc
	// AccessLogBuffer is how many access log lines may wait for the writer
	// before new ones are dropped (and counted); 0 means 4096.
	AccessLogBuffer int
	// Reset resets the open connections of the service whose backend
	// satisfies match, in every engine serving it, and returns how many
	// (the server wires it to its engines' engine.Resetter). The policy
	// calls it when a close-after delay of drain or maint runs out, and
	// when a check takes a backend down in a service with
	// on_backend_down: close. Nil: nothing is ever reset.
	Reset func(ctx context.Context, match func(engine.Target) bool, reason engine.CloseReason) int
}

// Compile-time guard.
var (
	_ engine.Policy       = (*Policy)(nil)
	_ engine.FlowObserver = (*Policy)(nil)
)

// Policy implements engine.Policy for one service. Create it with New; it
// is safe for concurrent use by any number of engines.
type Policy struct {
	st      atomic.Pointer[state]
	applyMu sync.Mutex

	baseLog *slog.Logger // Options.Logger; state.log adds the service name
	now     func() time.Time
	base    time.Time // origin of the monotonic nanoseconds used for cooldowns

	active atomic.Int64
	total  atomic.Uint64
	// toRoutes counts connections routed to a route's pool; the default
	// pool's matches are total − toRoutes, so that a service without routes
	// pays nothing for the count.
	toRoutes    atomic.Uint64
	defaultSeen atomic.Uint64                           // the default pool's count as last reported
	rejected    []atomic.Uint64                         // by reason, indexed like rejectReasons
	inspected   [engine.InspectClosed + 1]atomic.Uint64 // by engine.InspectResult
	noBackend   atomic.Uint64
	bytesIn     atomic.Uint64
	bytesOut    atomic.Uint64

	localFailures atomic.Uint64

	// rejectLog logs refused connections, localLog backend connects that
	// failed for a local reason (the engine then resets the client), each
	// at most once a second with the count and a sample client.
	rejectLog, localLog *rateLog

	// sources is the per-source table (max_connections_per_source,
	// connection_rate_per_source), made when a config first sets a limit
	// and kept from then on, across every reload (guarded by applyMu; the
	// data path reads it through state.sources).
	sources *access.Sources

	prot    *protect.Guard
	checker *health.Checker

	reset         func(ctx context.Context, match func(engine.Target) bool, reason engine.CloseReason) int
	closedOnDown  atomic.Uint64
	closedByAdmin atomic.Uint64
	// timers are the pending close-after resets, per backend (guarded by
	// applyMu).
	timers map[*pool.Backend]*pendingReset

	access        chan accessEntry
	accessDropped atomic.Uint64

	conns sync.Pool // *connState
}

// state is everything derived from one service's config; swapped
// atomically, read once per call on the data path.
type state struct {
	// Admission (Admit), in order: allow/deny, the per-source table, the
	// concurrency limit. guarded is false when neither access rule nor
	// per-source limit is set. The data path's fields come first.
	guarded   bool
	allowOn   bool
	accessLog bool
	routing   routing // how a connection finds its pool
	maxConns  int64   // ≤ 0: unlimited; max_udp_flows on a UDP service
	udp       bool    // a UDP service: connections are flows (docs/udp.md)
	def       *poolState
	sources   *access.Sources // nil: no per-source limit
	allow     *access.PrefixSet
	deny      *access.PrefixSet
	perSource int
	rate      access.Rate
	rise      int
	fall      int
	backoff   pool.Backoff
	log       *slog.Logger // with the service name

	svc *config.Service

	// pools are the service's pools in config.Service.Pools order; routes
	// the compiled matchers of its routes, in order (routes[i].pool is
	// pools[i]); def the default pool, nil when the service has none.
	pools  []*poolState
	routes []route

	// health is the round every health check runs: each server probed once
	// per check config, its result fed to every pool holding it.
	health health.Round
}

// routing says where a connection's pool is chosen.
type routing uint8

const (
	routeDefault  routing = iota // no routes: every connection goes to the default pool (or none)
	routeBySource                // only source routes: Admit routes by the client address
	routeInspect                 // sni/alpn routes: Route routes after inspection
)

// New returns a policy serving svc (a nil svc serves no backend). Nothing
// runs in the background until Run (or RunHealth) is called; until the
// first health round every backend is served optimistically (see
// pool.Health).
func New(svc *config.Service, o Options) *Policy {
	if svc == nil {
		svc = emptyService()
	}
	p := &Policy{baseLog: o.Logger, now: o.Now, reset: o.Reset, timers: map[*pool.Backend]*pendingReset{}}
	if p.baseLog == nil {
		p.baseLog = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	p.base = p.now()
	n := o.AccessLogBuffer
	if n <= 0 {
		n = 4096
	}
	p.access = make(chan accessEntry, n)
	p.rejected = make([]atomic.Uint64, len(rejectReasons))
	p.rejectLog = newRateLog("rejecting connections", rejectLogNames())
	p.localLog = newRateLog("rejecting connections", localLogNames())
	p.conns.New = func() any { return new(connState) }
	p.prot = protect.NewGuard(protectConfig(svc), p.logProtection)
	p.checker = health.New(p, health.Options{Resolver: o.Resolver, Dial: o.HealthDial, Logger: p.baseLog, Now: p.now})
	p.sourcesFor(svc)
	st, _ := p.newState(svc, nil)
	p.st.Store(st)
	return p
}

func emptyService() *config.Service {
	return &config.Service{Name: config.DefaultServiceName, Protocol: config.TCP, Method: config.RoundRobin, Runtime: config.Profile(0)}
}

// sourcesFor makes or resizes the per-source table when svc limits sources.
// A table, once made, stays (with its size kept up to date): turning limits
// off and on again keeps the counts of open connections right.
func (p *Policy) sourcesFor(svc *config.Service) {
	size := svc.Runtime.SourceTableSize
	if size <= 0 {
		size = access.DefaultSourceTableSize
	}
	size = min(size, access.MaxSourceTableSize)
	limited := svc.Access.MaxConnectionsPerSource > 0 || !svc.Access.ConnectionRatePerSource.IsZero()
	switch {
	case p.sources == nil && limited:
		p.sources, _ = access.NewSources(size, p.now) // size is in range
	case p.sources != nil && p.sources.Stats().Size != size:
		_ = p.sources.Resize(size) // size is in range
	}
}

// newState compiles svc; prev (nil at New) lends its pools by name. changes
// are what Apply logs.
func (p *Policy) newState(svc *config.Service, prev *state) (*state, []change) {
	rt := svc.Runtime
	st := &state{
		svc:       svc,
		maxConns:  int64(rt.MaxConcurrentConnections),
		backoff:   pool.Backoff{Initial: rt.FailoverBackoffInitial, Max: rt.FailoverBackoffMax, Cooldown: rt.BackendCooldown},
		rise:      rt.HealthCheckSuccessThreshold,
		fall:      rt.HealthCheckFailThreshold,
		accessLog: rt.AccessLog,
		udp:       svc.Protocol == config.UDP,
	}
	if st.udp {
		st.maxConns = int64(rt.MaxUDPFlows)
	}
	if prev != nil && prev.svc.Name == svc.Name {
		st.log = prev.log
	} else {
		st.log = p.baseLog.With(slog.String("service", svc.Name))
	}

	a := &svc.Access
	st.allowOn, st.allow, st.deny = len(a.Allow) > 0, PrefixSet(a.Allow), PrefixSet(a.Deny)
	st.perSource, st.rate = max(a.MaxConnectionsPerSource, 0), a.ConnectionRatePerSource
	if st.perSource > 0 || !st.rate.IsZero() {
		st.sources = p.sources
	}
	st.guarded = st.allowOn || st.deny != nil || st.sources != nil

	changes := st.buildPools(svc, prev)
	switch {
	case svc.Inspects():
		st.routing = routeInspect
	case len(st.routes) > 0:
		st.routing = routeBySource
	}
	var onDown func(*pool.Backend, error)
	if svc.OnBackendDown == config.OnDownClose {
		onDown = p.backendDown
	}
	st.health = healthRound(st, onDown)
	return st, changes
}

// PrefixSet is the set of the valid prefixes of ps, nil when ps is empty.
// Configs hold valid prefixes only (the config parser rejects others); an
// invalid netip.Prefix contains no address, so leaving one out changes
// nothing. The server builds the trusted_proxies set of engine.Tunables
// with it.
func PrefixSet(ps []netip.Prefix) *access.PrefixSet {
	if len(ps) == 0 {
		return nil
	}
	valid := make([]netip.Prefix, 0, len(ps))
	for _, x := range ps {
		if x.IsValid() {
			valid = append(valid, x)
		}
	}
	s, _ := access.NewPrefixSet(valid) // every prefix is valid
	return s
}

func protectConfig(s *config.Service) protect.Config {
	return protect.Config{
		Threshold:       s.Runtime.ProtectionTriggerThreshold,
		Window:          s.Runtime.ProtectionWindow,
		StableSuccesses: s.Runtime.ProtectionStableSuccessThreshold,
	}
}

// mono converts a clock reading to the monotonic nanoseconds of cooldowns.
func (p *Policy) mono(t time.Time) int64 { return int64(t.Sub(p.base)) }

// Service returns the service config in force.
func (p *Policy) Service() *config.Service { return p.st.Load().svc }

// Apply swaps in the service's reloaded config. Pools are matched by name
// (a route's, or the default pool's). In a kept pool, backends kept across
// the reload (same Key) keep their health, counters, cooldown and open
// connections, with the new weight; new backends start unknown — served
// optimistically, like at start-up — and a health round is triggered at
// once so they are checked promptly. A new route's pool starts fresh; a
// removed route, or a removed backend, gets no new connections, and its open
// ones finish and report Closed normally. Routes, access rules, limits,
// methods, weights, thresholds, timeouts, protection settings and the access
// log switch change live, for new connections; the per-source table keeps
// its counts and buckets. Connections already admitted finish their
// failover in the pool they started with. Apply never blocks on the data
// path.
func (p *Policy) Apply(svc *config.Service) {
	if svc == nil {
		return
	}
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	old := p.st.Load()
	p.sourcesFor(svc)
	st, changes := p.newState(svc, old)
	p.st.Store(st)
	p.prot.SetConfig(protectConfig(svc))
	added := false
	for _, c := range changes {
		c.log(st.log)
		added = added || c.added
	}
	if old.svc.Method != svc.Method {
		st.log.Info("balancing method changed", slog.String("method", string(svc.Method)), slog.String("previous", string(old.svc.Method)))
	}
	// New backends are checked at once; a shorter interval starts now
	// rather than after the old, longer one runs out.
	if added || svc.Runtime.HealthCheckInterval < old.svc.Runtime.HealthCheckInterval {
		p.checker.Trigger()
	}
}

// HealthRound implements health.Source: the current servers to probe and
// health settings, read by the checker at the start of every round.
func (p *Policy) HealthRound() health.Round { return p.st.Load().health }

// Run runs everything the policy needs in the background — active health
// checks (first round at once), the access log writer and the protection
// mode timer — until ctx is done, and returns when all of it has stopped.
func (p *Policy) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { p.RunHealth(ctx) })
	wg.Go(func() { p.RunAccessLog(ctx) })
	wg.Go(func() { p.RunTicker(ctx) })
	wg.Wait()
	p.stopTimers()
}

// RunHealth runs the active health checker until ctx is done (part of Run).
func (p *Policy) RunHealth(ctx context.Context) { p.checker.Run(ctx) }

// Resolve looks up the hostname backends that have no address yet (DNS
// only, in parallel, within the health timeout) so the first clients find
// them. Call it at start-up before serving; with IP-literal backends it
// returns at once. Errors are only informative: the health checks count
// DNS failures.
func (p *Policy) Resolve(ctx context.Context) error { return p.checker.Resolve(ctx) }

// CheckNow runs one health round synchronously (start-up, tests).
func (p *Policy) CheckNow(ctx context.Context) { p.checker.RunRound(ctx) }

// Tick applies protection mode's quiet-window exit (part of Run; every pick
// checks it too).
func (p *Policy) Tick() { p.prot.Tick(p.now()) }

// RunTicker calls Tick periodically until ctx is done (part of Run), so
// protection mode ends after a quiet window even without traffic.
func (p *Policy) RunTicker(ctx context.Context) {
	for {
		w := p.st.Load().svc.Runtime.ProtectionWindow
		t := time.NewTimer(min(max(w/10, 50*time.Millisecond), time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
			p.Tick()
		}
	}
}

func (p *Policy) logProtection(t protect.Transition) {
	log := p.baseLog
	if st := p.st.Load(); st != nil {
		log = st.log
	}
	switch {
	case !t.On:
		log.LogAttrs(context.Background(), slog.LevelInfo, "protection mode off",
			slog.String("cause", string(t.Cause)), slog.String("previous_reason", string(t.Previous)))
	case t.Previous != protect.ReasonNone:
		log.LogAttrs(context.Background(), slog.LevelWarn, "protection mode reason changed",
			slog.String("reason", string(t.Reason)), slog.String("previous_reason", string(t.Previous)),
			slog.Int("failures", t.Failures))
	default:
		log.LogAttrs(context.Background(), slog.LevelWarn, "protection mode on",
			slog.String("reason", string(t.Reason)), slog.Int("failures", t.Failures))
	}
}
