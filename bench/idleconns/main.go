// Command idleconns measures what an idle proxied connection costs a proxy.
//
// It opens -n TCP connections to -addr (the proxy), does one HTTP/1.1
// keep-alive request on each, holds them all open, and reads the resident
// memory (VmRSS; and RssAnon, the private part without the binary's own
// pages) and the open descriptors of the proxy process -pid and all its
// descendants (nginx's workers, say) before and after. Before the baseline it
// warms the proxy with -warm short connections, so one-time costs (first
// connection, code pages touched once) are not charged to the idle ones.
// After the reading it sends a second request on every held connection to
// prove the proxy really kept them.
//
// It prints one line of key=value pairs, for example
//
//	n=5000 ok=5000 alive=5000 rss_base_kb=7012 rss_kb=11520 anon_base_kb=3100 anon_kb=7400
//	  fds_base=12 fds=10012 rss_per_conn_b=923 anon_per_conn_b=880 fds_per_conn=2.00
//
// (on one line)
//
// and exits 1 when a connection failed or did not survive.
//
// Usage: idleconns -addr 127.0.0.1:9295 -pid 1234 [-n 5000] [-path /small]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	addr := flag.String("addr", "", "proxy address host:port")
	pid := flag.Int("pid", 0, "PID of the proxy (its descendants are counted too)")
	n := flag.Int("n", 5000, "connections to hold")
	warm := flag.Int("warm", 200, "short connections before the baseline")
	path := flag.String("path", "/small", "HTTP path to request")
	conc := flag.Int("c", 128, "connections opened at once")
	settle := flag.Duration("settle", 2*time.Second, "wait before each reading")
	flag.Parse()
	if *addr == "" || *pid <= 0 || *n <= 0 || *conc <= 0 {
		fmt.Fprintln(os.Stderr, "idleconns: -addr and -pid are required; -n and -c must be > 0")
		os.Exit(2)
	}
	if err := run(*addr, *pid, *n, *warm, *conc, *path, *settle); err != nil {
		fmt.Fprintln(os.Stderr, "idleconns:", err)
		os.Exit(1)
	}
}

func run(addr string, pid, n, warm, conc int, path string, settle time.Duration) error {
	ctx := context.Background()
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: bench\r\n\r\n")

	if warm > 0 {
		conns, err := openAll(ctx, addr, req, warm, conc)
		closeAll(conns)
		if err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		time.Sleep(settle)
	}
	base, err := readUsage(pid)
	if err != nil {
		return err
	}
	conns, openErr := openAll(ctx, addr, req, n, conc)
	defer closeAll(conns)
	time.Sleep(settle)
	held, err := readUsage(pid)
	if err != nil {
		return err
	}
	alive := 0
	for _, c := range conns {
		if c.roundTrip(req, 10*time.Second) == nil {
			alive++
		}
	}
	fmt.Println(formatResult(n, len(conns), alive, base, held))
	if openErr != nil {
		return openErr
	}
	if alive != n {
		return fmt.Errorf("%d of %d held connections did not answer a second request", n-alive, n)
	}
	return nil
}

// formatResult is the one output line; per-connection figures are divided
// by the connections actually opened.
func formatResult(n, ok, alive int, base, held usage) string {
	perRSS, perAnon, perFD := 0.0, 0.0, 0.0
	if ok > 0 {
		perRSS = float64(held.rssKB-base.rssKB) * 1024 / float64(ok)
		perAnon = float64(held.anonKB-base.anonKB) * 1024 / float64(ok)
		perFD = float64(held.fds-base.fds) / float64(ok)
	}
	return fmt.Sprintf("n=%d ok=%d alive=%d rss_base_kb=%d rss_kb=%d anon_base_kb=%d anon_kb=%d fds_base=%d fds=%d rss_per_conn_b=%.0f anon_per_conn_b=%.0f fds_per_conn=%.2f",
		n, ok, alive, base.rssKB, held.rssKB, base.anonKB, held.anonKB, base.fds, held.fds, perRSS, perAnon, perFD)
}

// conn is one held connection with its reader (kept across requests).
type conn struct {
	c net.Conn
	r *bufio.Reader
}

func (c *conn) roundTrip(req []byte, timeout time.Duration) error {
	if err := c.c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := c.c.Write(req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	if cerr := resp.Body.Close(); err == nil {
		err = cerr
	}
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}

// connTimeout bounds the connect and the first request of each connection.
var connTimeout = 5 * time.Second

// openAll opens n connections, conc at a time, each with one request. It
// stops opening more after the first failure (a proxy out of descriptors
// leaves connections in its accept queue, and waiting out each would take
// minutes) and returns the connections that succeeded and the first error.
func openAll(ctx context.Context, addr string, req []byte, n, conc int) ([]*conn, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		conns    = make([]*conn, 0, n)
		firstErr error
		failed   int
		wg       sync.WaitGroup
		sem      = make(chan struct{}, conc)
	)
	d := net.Dialer{Timeout: connTimeout}
	started := 0
	for ; started < n && ctx.Err() == nil; started++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			nc, err := d.DialContext(ctx, "tcp", addr)
			var c *conn
			if err == nil {
				c = &conn{c: nc, r: bufio.NewReaderSize(nc, 4096)}
				if err = c.roundTrip(req, connTimeout); err != nil {
					_ = nc.Close()
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				if firstErr == nil {
					firstErr = err
					cancel()
				}
				return
			}
			conns = append(conns, c)
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return conns, fmt.Errorf("%d of %d connections failed and %d not tried, first: %w", failed, n, n-started, firstErr)
	}
	return conns, nil
}

func closeAll(conns []*conn) {
	for _, c := range conns {
		_ = c.c.Close()
	}
}

// usage is the summed resident memory and open descriptors of a process tree.
type usage struct {
	rssKB  int64 // VmRSS
	anonKB int64 // RssAnon: private memory, without the binary's pages
	fds    int
}

func readUsage(pid int) (usage, error) {
	var u usage
	pids, err := tree(pid)
	if err != nil {
		return u, err
	}
	for _, p := range pids {
		rss, anon, err := memKB(p)
		if err != nil {
			return u, err
		}
		ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(p), "fd"))
		if err != nil {
			return u, fmt.Errorf("pid %d fds: %w", p, err)
		}
		u.rssKB += rss
		u.anonKB += anon
		u.fds += len(ents)
	}
	return u, nil
}

// tree lists pid and its descendants from /proc/<pid>/task/<tid>/children.
func tree(pid int) ([]int, error) {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		tasks, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(out[i]), "task"))
		if err != nil {
			if i == 0 {
				return nil, fmt.Errorf("pid %d: %w", pid, err)
			}
			continue // a descendant that just exited
		}
		for _, t := range tasks {
			b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(out[i]), "task", t.Name(), "children"))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					out = append(out, c)
				}
			}
		}
	}
	return out, nil
}

var errNoRSS = errors.New("no VmRSS or RssAnon line")

// memKB returns VmRSS and RssAnon (kB) of a process.
func memKB(pid int) (rss, anon int64, err error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	if rss, err = statusKB(string(b), "VmRSS:"); err != nil {
		return 0, 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	if anon, err = statusKB(string(b), "RssAnon:"); err != nil {
		return 0, 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	return rss, anon, nil
}

// statusKB returns the value (kB) of one field ("VmRSS:") of a
// /proc/<pid>/status text.
func statusKB(status, field string) (int64, error) {
	for _, line := range strings.Split(status, "\n") {
		rest, ok := strings.CutPrefix(line, field)
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, errNoRSS
		}
		return strconv.ParseInt(f[0], 10, 64)
	}
	return 0, errNoRSS
}
