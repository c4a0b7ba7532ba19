package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStatusKB(t *testing.T) {
	const status = "Name:\tbal\nVmPeak:\t  9000 kB\nVmRSS:\t    7012 kB\nRssAnon:\t 3000 kB\n"
	tests := []struct {
		name, in, field string
		want            int64
		err             bool
	}{
		{"VmRSS", status, "VmRSS:", 7012, false},
		{"RssAnon", status, "RssAnon:", 3000, false},
		{"first line", "VmRSS: 12 kB", "VmRSS:", 12, false},
		{"missing", "Name:\tkthreadd\nState:\tS\n", "VmRSS:", 0, true},
		{"empty value", "VmRSS:\n", "VmRSS:", 0, true},
		{"garbage", "VmRSS:\tlots kB\n", "VmRSS:", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := statusKB(tt.in, tt.field)
			if (err != nil) != tt.err || got != tt.want {
				t.Fatalf("statusKB = %d, %v; want %d, error %v", got, err, tt.want, tt.err)
			}
		})
	}
	if _, err := statusKB("", "VmRSS:"); !errors.Is(err, errNoRSS) {
		t.Fatalf("empty status: %v, want errNoRSS", err)
	}
}

func TestFormatResult(t *testing.T) {
	tests := []struct {
		name        string
		n, ok, live int
		base, held  usage
		want        string
	}{
		{"per conn", 4, 4, 4, usage{1000, 500, 10}, usage{1004, 502, 18},
			"n=4 ok=4 alive=4 rss_base_kb=1000 rss_kb=1004 anon_base_kb=500 anon_kb=502 fds_base=10 fds=18 rss_per_conn_b=1024 anon_per_conn_b=512 fds_per_conn=2.00"},
		{"divides by opened", 4, 2, 1, usage{1000, 500, 10}, usage{1001, 501, 14},
			"n=4 ok=2 alive=1 rss_base_kb=1000 rss_kb=1001 anon_base_kb=500 anon_kb=501 fds_base=10 fds=14 rss_per_conn_b=512 anon_per_conn_b=512 fds_per_conn=2.00"},
		{"none opened", 3, 0, 0, usage{1000, 500, 10}, usage{1000, 500, 10},
			"n=3 ok=0 alive=0 rss_base_kb=1000 rss_kb=1000 anon_base_kb=500 anon_kb=500 fds_base=10 fds=10 rss_per_conn_b=0 anon_per_conn_b=0 fds_per_conn=0.00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := formatResult(tt.n, tt.ok, tt.live, tt.base, tt.held); got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestReadUsageSelf(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc here")
	}
	u, err := readUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if u.rssKB <= 0 || u.anonKB <= 0 || u.anonKB > u.rssKB || u.fds < 3 {
		t.Fatalf("implausible usage of this test process: %+v", u)
	}
	if _, err := readUsage(1 << 30); err == nil {
		t.Fatal("readUsage of a PID that cannot exist succeeded")
	}
}

func TestRunAgainstHTTPServer(t *testing.T) {
	tests := []struct {
		name      string
		keepAlive bool
		wantErr   bool
	}{
		{"keep-alive holds every connection", true, false},
		{"server closing after one request is caught", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, "small")
			}))
			srv.Config.SetKeepAlivesEnabled(tt.keepAlive)
			srv.Start()
			t.Cleanup(srv.Close)
			addr := strings.TrimPrefix(srv.URL, "http://")
			err := run(addr, os.Getpid(), 20, 5, 4, "/small", 10*time.Millisecond)
			if (err != nil) != tt.wantErr {
				t.Fatalf("run: %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

// A proxy out of descriptors leaves connections unanswered: openAll must
// stop after the first failure instead of waiting out every connection.
func TestOpenAllStopsAtFirstFailure(t *testing.T) {
	old := connTimeout
	connTimeout = 300 * time.Millisecond
	t.Cleanup(func() { connTimeout = old })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	const answered = 5
	var held []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			_ = c.Close()
		}
	})
	go func() {
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
			if i < answered {
				go func() {
					buf := make([]byte, 512)
					_, _ = c.Read(buf)
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}()
			}
		}
	}()
	start := time.Now()
	conns, err := openAll(context.Background(), ln.Addr().String(), []byte("GET / HTTP/1.1\r\nHost: t\r\n\r\n"), 400, 1)
	closeAll(conns)
	if err == nil {
		t.Fatal("openAll succeeded although the server stopped answering")
	}
	if len(conns) != answered {
		t.Fatalf("%d connections succeeded, want %d", len(conns), answered)
	}
	// 395 unanswered connections one at a time would take 2 minutes.
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("openAll took %v: it did not stop at the first failure", d)
	}
}
