package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bal-lb/bal/engine"
	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/pool"
)

// Round is what one round checks and how, read at the start of the round.
type Round struct {
	// Backends are probed, each once.
	Backends []*pool.Backend
	// Mirrors, when not nil, has one entry per Backends entry: the backends
	// of other pools that are the same server checked the same way. They are
	// not probed; each gets its Backends entry's outcome (resolved
	// addresses, last check time, rise/fall observation), so a server listed
	// in several pools costs one probe a round.
	Mirrors [][]*pool.Backend
	// Checks, when not nil, has one entry per Backends entry: how that
	// backend (and its mirrors) is checked. A missing entry, or a zero
	// HealthCheck, is a TCP connect.
	Checks []config.HealthCheck
	// UDP says the backends serve a UDP service: a send_expect check sends
	// one datagram and waits for one back.
	UDP bool
	// OnDown, when set, is called after an active check took a backend
	// down (the backend, and the check's error); the policy closes the
	// backend's connections there when its service asks for it. It must
	// not block.
	OnDown func(b *pool.Backend, err error)
	// Resolve are backends checked passively only (a UDP pool without an
	// active check): the round resolves their hostnames, as it does for
	// the backends it probes, and feeds no health outcome.
	Resolve []*pool.Backend
	// Logger, when not nil, logs the round's health transitions instead of
	// Options.Logger (the policy's, with its service name).
	Logger   *slog.Logger
	Interval time.Duration // health_check_interval
	Timeout  time.Duration // health_check_timeout, per backend (DNS and connects)
	Rise     int           // health_check_success_threshold
	Fall     int           // health_check_fail_threshold
}

// Source supplies the current round; the policy implements it from its
// current snapshot.
type Source interface {
	HealthRound() Round
}

// Resolver looks up a host's addresses; *net.Resolver implements it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// DialFunc connects to address ("ip:port") over network "tcp" (or "udp"
// for a UDP service's send_expect check).
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Options configure a Checker; the zero value uses the defaults.
type Options struct {
	Resolver Resolver         // nil: net.DefaultResolver
	Dial     DialFunc         // nil: a net.Dialer
	Logger   *slog.Logger     // nil: discard
	Now      func() time.Time // timestamps of checks; nil: time.Now
}

// ErrNoAddress: a hostname resolved to no address.
var ErrNoAddress = errors.New("no address")

// ResolveError is a check that failed before any connect: the backend's
// hostname did not resolve (Err is the resolver's error, or ErrNoAddress).
type ResolveError struct {
	Host string
	Err  error
}

func (e *ResolveError) Error() string { return "resolve " + e.Host + ": " + e.Err.Error() }

func (e *ResolveError) Unwrap() error { return e.Err }

// minInterval keeps a nonsensical interval from spinning.
const minInterval = 10 * time.Millisecond

// Checker runs health rounds. Create it with New.
type Checker struct {
	src      Source
	resolver Resolver
	dial     DialFunc
	log      *slog.Logger
	now      func() time.Time

	roundMu   sync.Mutex // one round at a time
	kick      chan struct{}
	lastRound atomic.Int64 // UnixNano of the end of the last round
	rounds    atomic.Uint64
}

// New returns a checker for src.
func New(src Source, o Options) *Checker {
	c := &Checker{src: src, resolver: o.Resolver, dial: o.Dial, log: o.Logger, now: o.Now, kick: make(chan struct{}, 1)}
	if c.resolver == nil {
		c.resolver = net.DefaultResolver
	}
	if c.dial == nil {
		c.dial = (&net.Dialer{}).DialContext
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// Run checks every backend at once, then every interval, until ctx is done.
// A round that takes longer than the interval delays the next one instead
// of overlapping it. Trigger starts the next round early.
func (c *Checker) Run(ctx context.Context) {
	for {
		start := time.Now()
		interval := c.round(ctx)
		if ctx.Err() != nil {
			return
		}
		t := time.NewTimer(max(interval-time.Since(start), 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.kick:
			t.Stop()
		case <-t.C:
		}
	}
}

// RunRound runs one round now and returns when every backend was checked
// (or ctx is done). It waits for a round in progress to finish first.
func (c *Checker) RunRound(ctx context.Context) { c.round(ctx) }

// Trigger asks a running Run for a round as soon as the current one (if
// any) is over, e.g. after a reload added backends. It never blocks.
func (c *Checker) Trigger() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// LastRound is the end time of the latest complete round; zero before.
func (c *Checker) LastRound() time.Time {
	if n := c.lastRound.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Rounds counts complete rounds.
func (c *Checker) Rounds() uint64 { return c.rounds.Load() }

func (c *Checker) round(ctx context.Context) time.Duration {
	c.roundMu.Lock()
	defer c.roundMu.Unlock()
	r := c.src.HealthRound()
	var wg sync.WaitGroup
	for i, b := range r.Backends {
		wg.Go(func() { c.checkOne(ctx, b, r.mirrors(i), r.check(i), r) })
	}
	c.resolvePassive(ctx, &wg, r, false)
	wg.Wait()
	if ctx.Err() == nil {
		c.lastRound.Store(c.now().UnixNano())
		c.rounds.Add(1)
	}
	return max(r.Interval, minInterval)
}

// check returns how Backends[i] is checked (nil: a TCP connect).
func (r *Round) check(i int) *config.HealthCheck {
	if i < len(r.Checks) {
		return &r.Checks[i]
	}
	return nil
}

// mirrors returns the backends fed by Backends[i]'s probe.
func (r *Round) mirrors(i int) []*pool.Backend {
	if i < len(r.Mirrors) {
		return r.Mirrors[i]
	}
	return nil
}

// resolvePassive resolves, on wg, the hostnames of r's passively checked
// backends, each within the round's timeout (only those without addresses
// when missing is set).
func (c *Checker) resolvePassive(ctx context.Context, wg *sync.WaitGroup, r Round, missing bool) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	for _, b := range r.Resolve {
		if !b.NeedsResolve() || (missing && len(b.Addrs()) > 0) {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if _, err := c.resolve(ctx, b); err != nil && ctx.Err() == nil {
				c.log.Debug("resolving a passively checked backend failed", slog.String("backend", b.Name()), slog.Any("error", err))
			}
		})
	}
}

func (c *Checker) checkOne(ctx context.Context, b *pool.Backend, mirrors []*pool.Backend, hc *config.HealthCheck, r Round) {
	// A backend in maintenance is not probed: its health stays as it was
	// until it is back in service. The probe still runs for the mirrors
	// that are not in maintenance (the same server in another pool).
	fed := make([]*pool.Backend, 0, 1+len(mirrors))
	for _, x := range append([]*pool.Backend{b}, mirrors...) {
		if x.Admin() != pool.Maint {
			fed = append(fed, x)
		}
	}
	if len(fed) == 0 {
		return
	}
	err := c.probe(ctx, b, hc, r.Timeout, r.UDP)
	if ctx.Err() != nil {
		return // shutting down: the outcome says nothing about the backend
	}
	log := c.log
	if r.Logger != nil {
		log = r.Logger
	}
	now := c.now()
	if err != nil {
		log.Debug("health check failed", slog.String("backend", b.Name()), slog.String("reason", Reason(err)), slog.Any("error", err))
	}
	local := err != nil && engine.IsLocal(err) // bal ran out of descriptors or ports: nothing learned
	for _, x := range fed {
		if x != b {
			copyAddrs(x, b)
		}
		x.SetLastCheck(now)
		if local {
			continue
		}
		x.SetCheckError(err)
		ch := x.Observe(err == nil, r.Rise, r.Fall)
		LogChange(log, x, ch, "health_check", err)
		if ch == pool.ChangeDown && r.OnDown != nil {
			r.OnDown(x, err)
		}
	}
}

// copyAddrs gives a mirror the addresses its probe resolved.
func copyAddrs(dst, src *pool.Backend) {
	if a := src.Addrs(); dst.NeedsResolve() && len(a) > 0 && !slices.Equal(dst.Addrs(), a) {
		dst.SetAddrs(a)
	}
}

// Check checks one backend with a TCP connect (Probe's check): resolves a
// hostname (storing the addresses in the backend) and connects to its
// addresses in order until one accepts, all within timeout; the connection
// is closed at once. It returns nil when a connect succeeded, else a
// *CheckError. It records nothing else.
func (c *Checker) Check(ctx context.Context, b *pool.Backend, timeout time.Duration) error {
	return c.probe(ctx, b, nil, timeout, false)
}

// CheckWith is Check with the check hc (nil: a TCP connect): after the
// first address that accepts, the check's conversation runs on that
// connection and decides (docs/configuration.md#health-checks). udp probes
// a UDP service's backend (send_expect only).
func (c *Checker) CheckWith(ctx context.Context, b *pool.Backend, hc *config.HealthCheck, timeout time.Duration, udp bool) error {
	return c.probe(ctx, b, hc, timeout, udp)
}

func (c *Checker) probe(ctx context.Context, b *pool.Backend, hc *config.HealthCheck, timeout time.Duration, udp bool) error {
	if timeout <= 0 {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addrs := b.Addrs()
	if b.NeedsResolve() {
		var err error
		if addrs, err = c.resolve(ctx, b); err != nil {
			return &CheckError{Reason: ReasonDNS, Err: err}
		}
	}
	if len(addrs) == 0 {
		return &CheckError{Reason: ReasonDNS, Err: fmt.Errorf("backend %s: %w", b.Name(), ErrNoAddress)}
	}
	network := "tcp"
	if udp {
		network = "udp"
	}
	var errs []error
	for i, a := range addrs {
		a = probeAddr(a, hc)
		dctx, dcancel := partial(ctx, len(addrs)-i)
		conn, err := c.dial(dctx, network, a.String())
		dcancel()
		if err == nil {
			err = converse(ctx, conn, hc, b.Host(), a.Port(), udp)
			conn.Close()
			return err
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return connectError(errors.Join(errs...))
}

// Probe checks each of backends once, all in parallel, the way a round
// checks one (Check: resolve a hostname, then connect to its addresses in
// order, all within timeout), and returns each one's outcome in order: nil
// when a connect succeeded, a *ResolveError when the hostname did not
// resolve, else the connect errors. It keeps no state: bal doctor probes a
// config's backends with it when no bal runs.
func Probe(ctx context.Context, backends []config.Backend, timeout time.Duration, o Options) []error {
	c := New(nil, o)
	errs := make([]error, len(backends))
	var wg sync.WaitGroup
	for i, b := range backends {
		wg.Go(func() { errs[i] = c.Check(ctx, pool.NewBackend(b), timeout) })
	}
	wg.Wait()
	return errs
}

// partial gives one of n remaining addresses its share of ctx's remaining
// time, as net.Dialer does, so a black-holed first address does not use up
// the whole timeout.
func partial(ctx context.Context, n int) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok || n <= 1 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, time.Until(dl)/time.Duration(n))
}

// Resolve looks up, in parallel, every hostname backend of the current
// round that has no address yet, each within the round's timeout, and
// stores the addresses. It changes no health state (a check does that); use
// it at start-up so the data path has addresses before the first client,
// without waiting for connect timeouts. Errors are joined.
func (c *Checker) Resolve(ctx context.Context) error {
	r := c.src.HealthRound()
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	errs := make([]error, len(r.Backends))
	var wg sync.WaitGroup
	c.resolvePassive(ctx, &wg, r, true)
	for i, b := range r.Backends {
		if !b.NeedsResolve() || len(b.Addrs()) > 0 {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			if _, errs[i] = c.resolve(ctx, b); errs[i] == nil {
				for _, m := range r.mirrors(i) {
					copyAddrs(m, b)
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *Checker) resolve(ctx context.Context, b *pool.Backend) ([]netip.AddrPort, error) {
	ips, err := c.resolver.LookupNetIP(ctx, "ip", b.Host())
	if err != nil {
		return nil, &ResolveError{Host: b.Host(), Err: err}
	}
	addrs := make([]netip.AddrPort, 0, len(ips))
	for _, ip := range ips {
		if a := netip.AddrPortFrom(ip.Unmap(), b.Port()); !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	if len(addrs) == 0 {
		return nil, &ResolveError{Host: b.Host(), Err: ErrNoAddress}
	}
	if old := b.Addrs(); !slices.Equal(old, addrs) {
		b.SetAddrs(addrs)
		c.log.Debug("backend addresses changed", slog.String("backend", b.Name()), slog.Any("addresses", addrs))
	}
	return addrs, nil
}

// LogChange logs a health transition of b: warn when it went down, info when
// it came back; nothing for pool.ChangeNone. via says what observed it
// ("health_check" or "proxy"); err is the failure that took it down. The
// line names the backend's pool (key pool) when it has one.
func LogChange(l *slog.Logger, b *pool.Backend, ch pool.Change, via string, err error) {
	if ch == pool.ChangeNone {
		return
	}
	attrs := make([]slog.Attr, 0, 5)
	attrs = append(attrs, slog.String("backend", b.Name()))
	if p := b.Pool(); p != "" {
		attrs = append(attrs, slog.String("pool", p))
	}
	attrs = append(attrs, slog.String("via", via))
	switch ch {
	case pool.ChangeDown:
		attrs = append(attrs, slog.Int("failures", int(b.Health().Fails)))
		if err != nil {
			attrs = append(attrs, slog.String("error", err.Error()))
		}
		l.LogAttrs(context.Background(), slog.LevelWarn, "backend down", attrs...)
	case pool.ChangeUp:
		attrs = append(attrs, slog.Int("successes", int(b.Health().Successes)))
		l.LogAttrs(context.Background(), slog.LevelInfo, "backend up", attrs...)
	}
}
