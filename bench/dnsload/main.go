// Command dnsload is the DNS load client of bench/run.sh's dns workload: a
// closed loop like dnsperf's, with the latency percentiles dnsperf does not
// report.
//
//	dnsload -addr 127.0.0.1:53 [-c 16] [-q 8] [-d 6s] [-warmup 1s] [-name test.example]
//
// It opens -c UDP sockets (each one source port: one flow through a
// balancer), keeps -q queries for -name (type A) outstanding on each, and
// sends the next as soon as one is answered. A query unanswered after
// -timeout counts as lost. After -warmup it measures for -d and prints
//
//	BENCH queries=N answered=N lost=N bad=N duration_us=N qps=N p50_us=N p99_us=N p999_us=N
//
// where qps is answered queries per second and the percentiles are of
// answered queries' round trips; bad counts answers that are not one A
// record with rcode 0. With -wait it only asks once a 100 ms until an
// answer arrives or -timeout passes, and exits 0 or 1 (a readiness check).
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "", "DNS server host:port")
	conns := flag.Int("c", 16, "sockets (source ports)")
	window := flag.Int("q", 8, "queries outstanding per socket")
	dur := flag.Duration("d", 6*time.Second, "measured time")
	warmup := flag.Duration("warmup", time.Second, "unmeasured load before")
	name := flag.String("name", "test.example", "name to ask for (type A)")
	timeout := flag.Duration("timeout", time.Second, "a query unanswered after this long is lost")
	wait := flag.Bool("wait", false, "only wait until the server answers")
	flag.Parse()
	if *addr == "" || *conns <= 0 || *window <= 0 || *window > 4096 || *dur <= 0 || *timeout <= 0 {
		fmt.Fprintln(os.Stderr, "usage: dnsload -addr HOST:PORT [-c N] [-q N] [-d DUR] [-warmup DUR] [-timeout DUR] [-wait]")
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if *wait {
		if err := waitAnswer(ctx, *addr, *name, *timeout); err != nil {
			fmt.Fprintln(os.Stderr, "dnsload:", err)
			os.Exit(1)
		}
		return
	}
	r, err := run(ctx, config{addr: *addr, conns: *conns, window: *window, dur: *dur, warmup: *warmup, name: *name, timeout: *timeout})
	if err != nil {
		fmt.Fprintln(os.Stderr, "dnsload:", err)
		os.Exit(1)
	}
	r.write(os.Stdout)
}

type config struct {
	addr          string
	conns, window int
	dur, warmup   time.Duration
	name          string
	timeout       time.Duration
}

// result is a run's figures.
type result struct {
	queries, answered, lost, bad int
	elapsed                      time.Duration
	rtts                         []time.Duration // answered, measured
}

func (r result) percentile(p float64) time.Duration {
	if len(r.rtts) == 0 {
		return 0
	}
	i := int(float64(len(r.rtts))*p/100 + 0.5)
	return r.rtts[min(max(i-1, 0), len(r.rtts)-1)]
}

func (r result) write(w io.Writer) {
	qps := 0.0
	if r.elapsed > 0 {
		qps = float64(r.answered) / r.elapsed.Seconds()
	}
	fmt.Fprintf(w, "BENCH queries=%d answered=%d lost=%d bad=%d duration_us=%d qps=%.0f p50_us=%d p99_us=%d p999_us=%d\n",
		r.queries, r.answered, r.lost, r.bad, r.elapsed.Microseconds(), qps,
		r.percentile(50).Microseconds(), r.percentile(99).Microseconds(), r.percentile(99.9).Microseconds())
}

// query is a standard query for name, type A, class IN, with id.
func query(id uint16, name string) []byte {
	q := binary.BigEndian.AppendUint16(nil, id)
	q = append(q, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0) // RD; one question
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		q = append(q, byte(len(label)))
		q = append(q, label...)
	}
	return append(q, 0, 0, 1, 0, 1)
}

// good reports whether resp is an answer with rcode 0 and one record.
func good(resp []byte) bool {
	return len(resp) >= 12 && resp[2]&0x80 != 0 && resp[3]&0x0f == 0 && binary.BigEndian.Uint16(resp[6:]) == 1
}

func waitAnswer(ctx context.Context, addr, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	q := query(1, name)
	buf := make([]byte, 512)
	for {
		c, err := net.Dial("udp", addr)
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(100 * time.Millisecond))
			if _, err = c.Write(q); err == nil {
				var n int
				if n, err = c.Read(buf); err == nil && good(buf[:n]) {
					c.Close()
					return nil
				}
			}
			c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer from %s within %v: %v", addr, timeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// run drives the load and returns the measured window's figures.
func run(ctx context.Context, cfg config) (result, error) {
	socks := make([]*net.UDPConn, cfg.conns)
	for i := range socks {
		c, err := net.Dial("udp", cfg.addr)
		if err != nil {
			for _, s := range socks[:i] {
				s.Close()
			}
			return result{}, err
		}
		socks[i] = c.(*net.UDPConn)
		_ = socks[i].SetReadBuffer(1 << 20)
	}
	start := time.Now()
	from, until := start.Add(cfg.warmup), start.Add(cfg.warmup+cfg.dur)
	stop := context.AfterFunc(ctx, func() {
		for _, s := range socks {
			_ = s.SetReadDeadline(time.Now())
		}
	})
	defer stop()
	parts := make([]result, len(socks))
	errs := make([]error, len(socks))
	var wg sync.WaitGroup
	for i, s := range socks {
		wg.Go(func() {
			defer s.Close()
			parts[i], errs[i] = loop(ctx, s, cfg, from, until)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return result{}, err
	}
	r := result{elapsed: until.Sub(from)}
	for _, p := range parts {
		r.queries += p.queries
		r.answered += p.answered
		r.lost += p.lost
		r.bad += p.bad
		r.rtts = append(r.rtts, p.rtts...)
	}
	slices.Sort(r.rtts)
	return r, ctx.Err()
}

// loop keeps cfg.window queries outstanding on s until until; only those
// sent in [from, until) are counted.
func loop(ctx context.Context, s *net.UDPConn, cfg config, from, until time.Time) (result, error) {
	var r result
	base := time.Now()
	sentAt := make([]int64, 1<<16) // per id: ns since base + 1 while outstanding, else 0
	type pending struct {
		id uint16
		at int64
	}
	var order []pending // send order, for expiry
	id := uint16(time.Now().UnixNano())
	q := query(0, cfg.name)
	buf := make([]byte, 512)
	outstanding := 0
	send := func(now time.Time) error {
		for outstanding < cfg.window {
			id++
			if sentAt[id] != 0 {
				continue // still outstanding from 65,536 queries ago
			}
			binary.BigEndian.PutUint16(q, id)
			if _, err := s.Write(q); err != nil {
				if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOBUFS) {
					return nil // an ICMP left from before, or no buffer: the loop goes on
				}
				return err
			}
			t := now.Sub(base).Nanoseconds() + 1
			sentAt[id] = t
			order = append(order, pending{id, t})
			outstanding++
			if !now.Before(from) && now.Before(until) {
				r.queries++
			}
		}
		return nil
	}
	for {
		now := time.Now()
		if !now.Before(until) || ctx.Err() != nil {
			return r, nil
		}
		if err := send(now); err != nil {
			return r, err
		}
		// Expire the oldest queries, skipping those answered.
		for len(order) > 0 && sentAt[order[0].id] != order[0].at {
			order = order[1:]
		}
		deadline := until
		if len(order) > 0 {
			if exp := base.Add(time.Duration(order[0].at) + cfg.timeout); exp.Before(deadline) {
				deadline = exp
			}
		}
		_ = s.SetReadDeadline(deadline)
		n, err := s.Read(buf)
		now = time.Now()
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				for len(order) > 0 && base.Add(time.Duration(order[0].at)+cfg.timeout).Before(now.Add(time.Millisecond)) {
					p := order[0]
					order = order[1:]
					if sentAt[p.id] == p.at {
						sentAt[p.id] = 0
						outstanding--
						if at := base.Add(time.Duration(p.at)); !at.Before(from) && at.Before(until) {
							r.lost++
						}
					}
				}
				continue
			case errors.Is(err, syscall.ECONNREFUSED):
				continue // ICMP: the queries in flight will expire
			}
			return r, err
		}
		if n < 2 {
			continue
		}
		rid := binary.BigEndian.Uint16(buf)
		at := sentAt[rid]
		if at == 0 {
			continue // late or unknown
		}
		sentAt[rid] = 0
		outstanding--
		sent := base.Add(time.Duration(at))
		if !sent.Before(from) && sent.Before(until) {
			if good(buf[:n]) {
				r.answered++
				r.rtts = append(r.rtts, now.Sub(sent))
			} else {
				r.bad++
			}
		}
	}
}
