package lifecycle_test

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bal-lb/bal/cmd/bal/internal/baltest"
)

// Test 1: a storm of SIGHUP reloads under HTTP load. Three HTTP backends;
// wrk (or the Go fallback) keeps 64 keep-alive connections busy while a Go
// client opens a fresh connection per request, and bal is reloaded every
// 100 ms (fast: 150 ms) with two valid configs that permute the backends'
// order and weights on the same listener. Pass: 0 socket errors, 0 non-2xx,
// the PID unchanged, the reload counter +N with 0 failures, RSS after ≤
// 1.10 × before, socket fds back to the baseline ± 4 within 5 s.
//
// "Before" is taken after an identical warm-up storm: a bal process of
// ~12 MiB grows by a few MiB under its first load and its first reloads
// (the GC's heap goal), which is not what the figure is about; a leak per
// reload or per connection still shows as growth from one storm to the
// next. The fast variant (16 reloads, a few seconds) is too short to tell a
// leak from the GC's drift, so there the RSS ratio is recorded and judged
// only in the soak run.
func TestReloadStorm(t *testing.T) {
	for _, eng := range baltest.Engines() {
		t.Run(eng, func(t *testing.T) { testReloadStorm(t, eng) })
	}
}

// storm is one run of load plus reloads.
type storm struct {
	load          baltest.HTTPLoadResult
	fresh, failed int64
	firstFailure  string
	ok, rejected  int
	slowest       time.Duration
}

func testReloadStorm(t *testing.T, eng string) {
	reloads := baltest.Pick(16, 200)
	every := baltest.Pick(150*time.Millisecond, 100*time.Millisecond)
	const conns = 64

	bs := []*baltest.HTTPBackend{
		baltest.NewHTTPBackend(t, "a"), baltest.NewHTTPBackend(t, "b"), baltest.NewHTTPBackend(t, "c"),
	}
	cfgA := baltest.Config{Port: baltest.FreePort(t), Engine: eng, LogLevel: "info", Runtime: quietRuntime(),
		Backends: []string{bs[0].Addr(), bs[1].Addr(), bs[2].Addr()}}
	cfgB := cfgA
	cfgB.Backends = []string{bs[2].Addr() + " 2", bs[0].Addr(), bs[1].Addr() + " 3"}
	p := baltest.Start(t, cfgA)
	url := "http://" + p.Addr() + "/"

	run := func() storm {
		t.Helper()
		var s storm
		loadFor := time.Duration(reloads)*every + time.Second
		var fresh, failed atomic.Int64
		var first atomic.Value
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // fresh connections, one request each
			defer wg.Done()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if err := freshRequest(url); err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err.Error())
				}
				fresh.Add(1)
			}
		}()
		var loadErr error
		loadDone := make(chan struct{})
		go func() {
			defer close(loadDone)
			s.load, loadErr = baltest.HTTPLoad(url, 2, conns, loadFor, 2*time.Second)
		}()
		time.Sleep(500 * time.Millisecond)
		for i := range reloads {
			next := time.Now().Add(every)
			cfg := cfgB
			if i%2 == 1 {
				cfg = cfgA
			}
			sent := time.Now()
			e := p.Reload(&cfg)
			s.slowest = max(s.slowest, time.Since(sent))
			if e.Msg == "reloaded" {
				s.ok++
			} else {
				s.rejected++
				t.Errorf("reload %d rejected: %s", i, e.Attr("error"))
			}
			time.Sleep(time.Until(next))
		}
		<-loadDone // the load run ends on its own
		close(stop)
		wg.Wait()
		if loadErr != nil {
			t.Fatal(loadErr)
		}
		s.fresh, s.failed = fresh.Load(), failed.Load()
		if v, ok := first.Load().(string); ok {
			s.firstFailure = v
		}
		if s.load.Requests == 0 || s.load.Errors() > 0 || s.load.Non2xx > 0 || s.failed > 0 {
			t.Errorf("client errors: %v %v\n%s; fresh connections: %d of %d failed (first: %s)",
				s.load, s.load.FirstErrors, s.load.Raw, s.failed, s.fresh, s.firstFailure)
		}
		return s
	}

	warm := run()
	time.Sleep(time.Second)
	base := baltest.FDKinds(t, p.PID())
	baseRSS := p.RSS()
	st0 := p.Status()
	pid0 := p.PID()

	s := run()

	st1 := p.Status()
	pidNow := int(baltest.Number(st1, "pid"))
	dReloads := int(baltest.Number(st1, "reloads") - baltest.Number(st0, "reloads"))
	dFailures := int(baltest.Number(st1, "reload_failures") - baltest.Number(st0, "reload_failures"))
	// Sockets back to the baseline within 5 s. (Pipes are reported, not
	// judged: the std engine's splice pipes sit in the Go runtime's pool
	// until a GC frees them, whatever the reloads do.)
	var after map[string]int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		after = baltest.FDKinds(t, p.PID())
		if d := after["socket"] - base["socket"]; d >= -4 && d <= 4 || time.Now().After(deadline) {
			break
		}
	}
	time.Sleep(time.Second)
	rss := p.RSS()
	ratio := float64(rss) / float64(baseRSS)
	dSock := after["socket"] - base["socket"]
	for _, b := range bs {
		if b.Requests() == 0 {
			t.Errorf("backend %s served nothing", b.Name)
		}
	}
	clean := func(s storm) bool {
		return s.load.Requests > 0 && s.load.Errors() == 0 && s.load.Non2xx == 0 && s.failed == 0 && s.rejected == 0
	}
	rssOK := ratio <= 1.10
	rssNote := ""
	if !baltest.Soaking() {
		rssOK, rssNote = true, ", judged in soak only"
	}
	pass := clean(warm) && clean(s) && pidNow == pid0 && baltest.Alive(pid0) && dReloads == reloads && dFailures == 0 &&
		rssOK && dSock >= -4 && dSock <= 4
	baltest.Record(t, 1, fmt.Sprintf("%s, %s: %d SIGHUPs every %s during %s -c%d (%s); %d fresh conns, %d failed; PID same %v; reloads +%d, failures +%d; slowest reload %s; RSS %d→%d KiB (×%.2f%s; before = after an identical warm-up storm: %d requests, %d errors); socket fds %d→%d, pipes %d→%d",
		eng, variant(), reloads, ms(every), s.load.Tool, conns, s.load, s.fresh, s.failed,
		pidNow == pid0, dReloads, dFailures, ms(s.slowest), baseRSS, rss, ratio, rssNote, warm.load.Requests, warm.load.Errors()+warm.load.Non2xx+warm.failed,
		base["socket"], after["socket"], base["pipe"], after["pipe"]), pass)
}

// freshRequest sends one GET on a new connection and closes it.
func freshRequest(url string) error {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 2 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}
