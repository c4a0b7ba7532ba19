package policy

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/balance"
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
}

// Compile-time guard.
var _ engine.Policy = (*Policy)(nil)

// Policy implements engine.Policy. Create it with New; it is safe for
// concurrent use by any number of engines.
type Policy struct {
	st      atomic.Pointer[state]
	applyMu sync.Mutex

	log  *slog.Logger
	now  func() time.Time
	base time.Time // origin of the monotonic nanoseconds used for cooldowns

	active    atomic.Int64
	total     atomic.Uint64
	rejected  []atomic.Uint64 // by reason, indexed like rejectReasons
	noBackend atomic.Uint64
	bytesIn   atomic.Uint64
	bytesOut  atomic.Uint64

	localFailures atomic.Uint64

	// rejectLog logs refused connections, localLog backend connects that
	// failed for a local reason (the engine then resets the client), each
	// at most once a second with the count.
	rejectLog, localLog *rateLog

	prot    *protect.Guard
	checker *health.Checker

	access        chan accessEntry
	accessDropped atomic.Uint64

	conns sync.Pool // *connState
}

// state is everything derived from one service's config; swapped
// atomically.
type state struct {
	svc       *config.Service
	pool      *pool.Pool
	bal       balance.Balancer
	keys      []string
	weights   []int
	hashed    bool  // the method uses the client hash
	maxConns  int64 // ≤ 0: unlimited
	backoff   pool.Backoff
	rise      int
	fall      int
	accessLog bool
}

// New returns a policy serving svc (a nil svc serves no backend). Nothing runs in the background until
// Run (or RunHealth) is called; until the first health round every backend
// is served optimistically (see pool.Health).
func New(svc *config.Service, o Options) *Policy {
	if svc == nil {
		svc = &config.Service{Name: config.DefaultServiceName, Protocol: config.TCP, Method: config.RoundRobin, Runtime: config.Profile(0)}
	}
	p := &Policy{log: o.Logger, now: o.Now}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
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
	p.checker = health.New(p, health.Options{Resolver: o.Resolver, Dial: o.HealthDial, Logger: p.log, Now: p.now})
	pl, _, _ := pool.New(svc.Backends, nil)
	p.st.Store(newState(svc, pl, nil))
	return p
}

func newState(svc *config.Service, pl *pool.Pool, prev *state) *state {
	rt := svc.Runtime
	st := &state{
		svc:       svc,
		pool:      pl,
		keys:      pl.Keys(),
		weights:   pl.Weights(),
		hashed:    svc.Method == config.SourceHash,
		maxConns:  int64(rt.MaxConcurrentConnections),
		backoff:   pool.Backoff{Initial: rt.FailoverBackoffInitial, Max: rt.FailoverBackoffMax, Cooldown: rt.BackendCooldown},
		rise:      rt.HealthCheckSuccessThreshold,
		fall:      rt.HealthCheckFailThreshold,
		accessLog: rt.AccessLog,
	}
	// Same method over the same backends and weights: keep the balancer, so
	// a reload does not restart the round-robin order or rebuild a table.
	if prev != nil && prev.svc.Method == svc.Method && slices.Equal(prev.keys, st.keys) && slices.Equal(prev.weights, st.weights) {
		st.bal = prev.bal
	} else {
		st.bal = balance.New(svc.Method, st.keys, st.weights)
	}
	return st
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

// Apply swaps in the service's reloaded config. Backends kept across the reload (same
// Key) keep their health, counters, cooldown and open connections, with the
// new weight. New backends start unknown — served optimistically, like at
// start-up — and a health round is triggered at once so they are checked
// promptly. Removed backends get no new connections; their open ones finish
// and report Closed normally. Method, weights, thresholds, timeouts,
// protection settings and the access log switch change live. Connections
// already admitted finish their failover on the backend list they started
// with. Apply never blocks on the data path.
func (p *Policy) Apply(svc *config.Service) {
	if svc == nil {
		return
	}
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	old := p.st.Load()
	pl, added, removed := pool.New(svc.Backends, old.pool)
	p.st.Store(newState(svc, pl, old))
	p.prot.SetConfig(protectConfig(svc))
	for _, b := range added {
		p.log.Info("backend added", slog.String("backend", b.Name()))
	}
	for _, b := range removed {
		p.log.Info("backend removed", slog.String("backend", b.Name()), slog.Int64("active_connections", b.Active()))
	}
	if old.svc.Method != svc.Method {
		p.log.Info("balancing method changed", slog.String("method", string(svc.Method)), slog.String("previous", string(old.svc.Method)))
	}
	// New backends are checked at once; a shorter interval starts now
	// rather than after the old, longer one runs out.
	if len(added) > 0 || svc.Runtime.HealthCheckInterval < old.svc.Runtime.HealthCheckInterval {
		p.checker.Trigger()
	}
}

// HealthRound implements health.Source: the current backends and health
// settings, read by the checker at the start of every round.
func (p *Policy) HealthRound() health.Round {
	st := p.st.Load()
	rt := st.svc.Runtime
	return health.Round{
		Backends: st.pool.Backends(),
		Interval: rt.HealthCheckInterval,
		Timeout:  rt.HealthCheckTimeout,
		Rise:     rt.HealthCheckSuccessThreshold,
		Fall:     rt.HealthCheckFailThreshold,
	}
}

// Run runs everything the policy needs in the background — active health
// checks (first round at once), the access log writer and the protection
// mode timer — until ctx is done, and returns when all of it has stopped.
func (p *Policy) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { p.RunHealth(ctx) })
	wg.Go(func() { p.RunAccessLog(ctx) })
	wg.Go(func() { p.RunTicker(ctx) })
	wg.Wait()
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
	switch {
	case !t.On:
		p.log.LogAttrs(context.Background(), slog.LevelInfo, "protection mode off",
			slog.String("cause", string(t.Cause)), slog.String("previous_reason", string(t.Previous)))
	case t.Previous != protect.ReasonNone:
		p.log.LogAttrs(context.Background(), slog.LevelWarn, "protection mode reason changed",
			slog.String("reason", string(t.Reason)), slog.String("previous_reason", string(t.Previous)),
			slog.Int("failures", t.Failures))
	default:
		p.log.LogAttrs(context.Background(), slog.LevelWarn, "protection mode on",
			slog.String("reason", string(t.Reason)), slog.Int("failures", t.Failures))
	}
}
