package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
	"github.com/bal-lb/bal/engine/enginetest"
	"github.com/bal-lb/bal/engine/metrics/metricstest"
)

// Black-box test of the metrics: the real binary's runtime.metrics_address
// listener and its control socket's GET /metrics
// serve every stable metric, and the values follow real traffic, failures,
// health and reloads.

// scraper GETs /metrics from a running bal and parses it strictly; every
// scrape must hold every stable series for the configured backends.
type scraper struct {
	client   *http.Client
	url      string
	backends []string
}

func tcpScraper(addr string, backends []string) *scraper {
	return &scraper{client: &http.Client{Timeout: 3 * time.Second}, url: "http://" + addr + "/metrics", backends: backends}
}

// unixScraper scrapes the control socket, as
// `curl --unix-socket bal.sock http://x/metrics` does.
func unixScraper(sock string, backends []string) *scraper {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	return &scraper{client: &http.Client{Timeout: 3 * time.Second, Transport: tr}, url: "http://x/metrics", backends: backends}
}

func (s *scraper) scrape(t *testing.T) *metricstest.Exposition {
	t.Helper()
	resp, err := s.client.Get(s.url)
	if err != nil {
		t.Fatalf("GET %s: %v", s.url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", s.url, resp.StatusCode, err, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("Content-Type %q", ct)
	}
	x, err := metricstest.Parse(string(body))
	if err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	if err := metricstest.CheckStable(x, s.backends); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	return x
}

// until scrapes until ok accepts a scrape (within 5 s).
func (s *scraper) until(t *testing.T, what string, ok func(x *metricstest.Exposition) bool) *metricstest.Exposition {
	t.Helper()
	var x *metricstest.Exposition
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
		if x = s.scrape(t); ok(x) {
			return x
		}
	}
	t.Fatalf("metrics never showed %s; last scrape:\n%s", what, x)
	return nil
}

// metricIs is a want: the sum of the series of name whose labels include
// the given pairs == value (the one service's, its pool's).
func metricIs(value float64, series ...string) func(*metricstest.Exposition) bool {
	return func(x *metricstest.Exposition) bool {
		v, ok := x.Sum(series[0], series[1:]...)
		return ok && v == value
	}
}

func allOf(conds ...func(*metricstest.Exposition) bool) func(*metricstest.Exposition) bool {
	return func(x *metricstest.Exposition) bool {
		for _, c := range conds {
			if !c(x) {
				return false
			}
		}
		return true
	}
}

func metricValue(x *metricstest.Exposition, series ...string) float64 {
	v, _ := x.Sum(series[0], series[1:]...)
	return v
}

func TestMetricsBlackBox(t *testing.T) {
	for _, eng := range baltest.Engines() {
		t.Run(eng, func(t *testing.T) { testMetrics(t, eng) })
	}
}

func testMetrics(t *testing.T, eng string) {
	good := enginetest.NewBackend(t, enginetest.Echo)
	doomed := enginetest.NewBackend(t, enginetest.Echo)
	mport := baltest.FreePort(t)
	// Frequent health rounds, but a fail threshold high enough that a dead
	// backend stays up (and keeps being picked) for the seconds this test
	// needs, and no protection mode: connect failures show per backend and
	// reason.
	health := []string{
		"health_check_interval_ms: 100", "health_check_timeout_ms: 500", "health_check_fail_threshold: 50",
		"backend_connect_timeout_ms: 500", "failover_backoff_initial_ms: 1", "failover_backoff_max_ms: 1",
		"backend_cooldown_ms: 0", "protection_trigger_threshold: 1000",
		fmt.Sprintf("metrics_address: 127.0.0.1:%d", mport),
	}
	cfg := baltest.Config{Port: baltest.FreePort(t), Engine: eng, Backends: []string{good.Addr.String(), doomed.Addr.String()}, Runtime: health}
	p, path := startShortDrain(t, cfg)
	kg, kd := good.Addr.String(), doomed.Addr.String()
	tcp := tcpScraper(fmt.Sprintf("127.0.0.1:%d", mport), []string{kg, kd})

	tcp.until(t, "the start-up state", allOf(
		func(x *metricstest.Exposition) bool { return metricValue(x, "bal_health_check_rounds_total") >= 1 },
		metricIs(1, "bal_backend_up", "backend", kg), metricIs(1, "bal_backend_up", "backend", kd),
		metricIs(0, "bal_connections_active"), metricIs(0, "bal_connections_total"), metricIs(0, "bal_connections_rejected_total"),
		metricIs(0, "bal_bytes_total", "direction", "client_to_backend"), metricIs(0, "bal_bytes_total", "direction", "backend_to_client"),
		metricIs(0, "bal_protection_mode"), metricIs(0, "bal_reloads_total", "result", "ok"), metricIs(0, "bal_reloads_total", "result", "error"),
		func(x *metricstest.Exposition) bool {
			return len(x.LabelValues("bal_info", "engine")) == 1 && x.LabelValues("bal_info", "engine")[0] == eng
		},
	))

	// The control socket serves the same exposition
	// (curl --unix-socket bal.sock http://x/metrics).
	sock := filepath.Join(p.Home, sockName)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(sock); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("no control socket: %v", err)
		}
	}
	unix := unixScraper(sock, []string{kg, kd})
	unix.until(t, "the start-up state on the control socket", metricIs(0, "bal_connections_total"))

	// Two held connections, one per backend: active and total move, and the
	// byte counters move while they are open.
	c1 := dialHeld(t, p.Addr())
	echo(t, c1, "0123456789")
	c2 := dialHeld(t, p.Addr())
	echoBulk(t, c2, bulkSize)
	tcp.until(t, "two open connections, one per backend", allOf(
		metricIs(2, "bal_connections_active"), metricIs(2, "bal_connections_total"),
		metricIs(1, "bal_backend_connections_active", "backend", kg), metricIs(1, "bal_backend_connections_active", "backend", kd),
		func(x *metricstest.Exposition) bool {
			return metricValue(x, "bal_bytes_total", "direction", "client_to_backend") >= bulkSize-64<<10 &&
				metricValue(x, "bal_bytes_total", "direction", "backend_to_client") >= bulkSize-64<<10
		},
	))
	unix.until(t, "two open connections on the control socket", metricIs(2, "bal_connections_active"))
	c1.Close()
	c2.Close()
	tcp.until(t, "both closed, every byte counted", allOf(
		metricIs(0, "bal_connections_active"), metricIs(2, "bal_connections_total"),
		metricIs(0, "bal_backend_connections_active", "backend", kg), metricIs(0, "bal_backend_connections_active", "backend", kd),
		metricIs(bulkSize+10, "bal_bytes_total", "direction", "client_to_backend"), metricIs(bulkSize+10, "bal_bytes_total", "direction", "backend_to_client"),
	))

	// The doomed backend dies; under the high threshold it stays up, so
	// clients still pick it, get refused and fail over to the good one.
	doomed.Close()
	for i := range 4 {
		if err := baltest.RoundTrip(p.Addr(), fmt.Sprintf("after the kill %d", i)); err != nil {
			t.Fatalf("client %d after the kill: %v", i, err)
		}
	}
	x := tcp.until(t, "refused connects to the dead backend", allOf(
		metricIs(6, "bal_connections_total"),
		func(x *metricstest.Exposition) bool {
			return metricValue(x, "bal_backend_connect_failures_total", "backend", kd, "reason", "refused") >= 1
		},
	))
	for _, s := range [][]string{{kd, "timeout"}, {kd, "other"}, {kg, "timeout"}, {kg, "refused"}, {kg, "other"}} {
		if v := metricValue(x, "bal_backend_connect_failures_total", "backend", s[0], "reason", s[1]); v != 0 {
			t.Errorf("failures{%s,%s} = %v, want 0", s[0], s[1], v)
		}
	}

	// A reload to a fail threshold of 1: counted as ok, and the next health
	// round takes the dead backend down while the good one stays up.
	strict := append([]string(nil), health...)
	strict[2] = "health_check_fail_threshold: 1"
	cfg.Runtime = append(append([]string(nil), shortDrain...), strict...)
	baltest.WriteFile(t, path, cfg.String())
	if e := p.Reload(nil); e.Msg != "reloaded" {
		t.Fatalf("reload: %s", e.Msg)
	}
	tcp.until(t, "the reload and the dead backend down", allOf(
		metricIs(1, "bal_reloads_total", "result", "ok"), metricIs(0, "bal_reloads_total", "result", "error"),
		metricIs(0, "bal_backend_up", "backend", kd), metricIs(1, "bal_backend_up", "backend", kg),
	))

	// A rejected reload is counted as an error; the metrics keep serving.
	baltest.WriteFile(t, path, "port: 0\n")
	if e := p.Reload(nil); e.Msg == "reloaded" {
		t.Fatal("an invalid file reloaded")
	}
	tcp.until(t, "the rejected reload", allOf(
		metricIs(1, "bal_reloads_total", "result", "ok"), metricIs(1, "bal_reloads_total", "result", "error"),
	))
	unix.until(t, "the reloads on the control socket", allOf(
		metricIs(1, "bal_reloads_total", "result", "ok"), metricIs(1, "bal_reloads_total", "result", "error"),
		metricIs(0, "bal_backend_up", "backend", kd), metricIs(6, "bal_connections_total"),
	))
}

const bulkSize = 256 << 10

// echoBulk sends n bytes through an echo and reads them back concurrently.
func echoBulk(t *testing.T, c net.Conn, n int) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, n))
		errc <- err
	}()
	got, err := io.ReadFull(c, make([]byte, n))
	if werr := <-errc; werr != nil || err != nil {
		t.Fatalf("bulk echo: write %v; read %d, %v", werr, got, err)
	}
	_ = c.SetDeadline(time.Time{})
}
