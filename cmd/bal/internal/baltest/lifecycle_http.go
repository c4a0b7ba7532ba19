package baltest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// HTTPBackend is a tiny HTTP/1.1 server on a loopback port that answers
// every request 200 with its name (keep-alive on), counting requests.
type HTTPBackend struct {
	Name     string
	addr     string
	srv      *http.Server
	requests atomic.Int64
	done     chan struct{}
}

// NewHTTPBackend starts one; the cleanup closes it.
func NewHTTPBackend(t testing.TB, name string) *HTTPBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &HTTPBackend{Name: name, addr: ln.Addr().String(), done: make(chan struct{})}
	body := []byte(name + "\n")
	b.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b.requests.Add(1)
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			_, _ = w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = b.srv.Serve(ln); close(b.done) }()
	t.Cleanup(func() { _ = b.srv.Close(); <-b.done })
	return b
}

// Addr is "127.0.0.1:port".
func (b *HTTPBackend) Addr() string { return b.addr }

// Requests is the number of requests answered so far.
func (b *HTTPBackend) Requests() int64 { return b.requests.Load() }

// HTTPLoadResult is what an HTTP load run saw: wrk's summary, or the same
// figures from the Go fallback.
type HTTPLoadResult struct {
	Tool                          string // "wrk" or "go"
	Requests                      int64
	Non2xx                        int64 // wrk: "Non-2xx or 3xx responses"
	Connect, Read, Write, Timeout int64 // socket errors
	FirstErrors                   []string
	Raw                           string
}

// Errors is the sum of socket errors.
func (r HTTPLoadResult) Errors() int64 { return r.Connect + r.Read + r.Write + r.Timeout }

func (r HTTPLoadResult) String() string {
	return fmt.Sprintf("%s: %d requests, %d non-2xx, socket errors connect %d read %d write %d timeout %d",
		r.Tool, r.Requests, r.Non2xx, r.Connect, r.Read, r.Write, r.Timeout)
}

// HaveWrk reports whether wrk is installed.
func HaveWrk() bool {
	_, err := exec.LookPath("wrk")
	return err == nil
}

var (
	wrkRequests = regexp.MustCompile(`(\d+) requests in`)
	wrkSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// HTTPLoad runs wrk (-t threads -c conns -d dur --timeout timeout) against
// url, or, without wrk, a Go client with the same number of keep-alive
// connections. It blocks for dur. It may run on any goroutine; an error
// means wrk itself failed.
func HTTPLoad(url string, threads, conns int, dur, timeout time.Duration) (HTTPLoadResult, error) {
	if !HaveWrk() {
		return goLoad(url, conns, dur, timeout), nil
	}
	secs := func(d time.Duration) string { return strconv.Itoa(int((d+time.Second-1)/time.Second)) + "s" }
	ctx, cancel := context.WithTimeout(context.Background(), dur+30*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, "wrk", "-t"+strconv.Itoa(threads), "-c"+strconv.Itoa(conns),
		"-d"+secs(dur), "--timeout", secs(timeout), url)
	out, err := c.CombinedOutput()
	r := HTTPLoadResult{Tool: "wrk", Raw: string(out)}
	if err != nil {
		return r, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	m := wrkRequests.FindStringSubmatch(r.Raw)
	if m == nil {
		return r, fmt.Errorf("wrk output without a request count:\n%s", out)
	}
	r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	if m := wrkSocket.FindStringSubmatch(r.Raw); m != nil {
		r.Connect, _ = strconv.ParseInt(m[1], 10, 64)
		r.Read, _ = strconv.ParseInt(m[2], 10, 64)
		r.Write, _ = strconv.ParseInt(m[3], 10, 64)
		r.Timeout, _ = strconv.ParseInt(m[4], 10, 64)
	}
	if m := wrkNon2xx.FindStringSubmatch(r.Raw); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return r, nil
}

// goLoad is HTTPLoad's fallback: conns goroutines, each with one
// keep-alive connection, issuing GETs back to back for dur.
func goLoad(url string, conns int, dur, timeout time.Duration) HTTPLoadResult {
	var (
		mu  sync.Mutex
		r   = HTTPLoadResult{Tool: "go"}
		wg  sync.WaitGroup
		end = time.Now().Add(dur)
	)
	note := func(f func()) { mu.Lock(); f(); mu.Unlock() }
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr, Timeout: timeout}
			for time.Now().Before(end) {
				resp, err := cl.Get(url)
				if err != nil {
					var ne net.Error
					note(func() {
						switch {
						case errors.As(err, &ne) && ne.Timeout():
							r.Timeout++
						case isDialError(err):
							r.Connect++
						default:
							r.Read++
						}
						if len(r.FirstErrors) < 5 {
							r.FirstErrors = append(r.FirstErrors, err.Error())
						}
					})
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				note(func() {
					r.Requests++
					if resp.StatusCode/100 != 2 && resp.StatusCode/100 != 3 {
						r.Non2xx++
					}
					if err != nil {
						r.Read++
					}
				})
			}
		}()
	}
	wg.Wait()
	return r
}

func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}
