package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"
)

// server answers queries on a loopback UDP socket: answer(query) is the
// reply, nil for none. It stops when the test ends.
func server(t *testing.T, answer func(q []byte) []byte) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if r := answer(buf[:n]); r != nil {
				_, _ = c.WriteToUDPAddrPort(r, from)
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return c.LocalAddr().String()
}

// reply is q answered with rcode and one A record.
func reply(q []byte, rcode byte) []byte {
	r := append([]byte(nil), q...)
	r[2], r[3] = 0x81, 0x80|rcode
	binary.BigEndian.PutUint16(r[6:], 1)
	return append(r, 0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 11)
}

func TestRun(t *testing.T) {
	n := 0
	tests := []struct {
		name   string
		answer func(q []byte) []byte
		check  func(r result) bool
	}{
		{"every query answered", func(q []byte) []byte { return reply(q, 0) },
			func(r result) bool { return r.answered > 0 && r.lost == 0 && r.bad == 0 && len(r.rtts) == r.answered }},
		{"errors are bad", func(q []byte) []byte { return reply(q, 2) },
			func(r result) bool { return r.answered == 0 && r.bad > 0 }},
		{"unanswered are lost", func(q []byte) []byte {
			n++
			if n%2 == 0 {
				return nil
			}
			return reply(q, 0)
		}, func(r result) bool { return r.answered > 0 && r.lost > 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := server(t, tt.answer)
			r, err := run(context.Background(), config{addr: addr, conns: 2, window: 4, dur: 600 * time.Millisecond, warmup: 50 * time.Millisecond,
				name: "test.example", timeout: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(r) {
				t.Fatalf("result %+v (%d rtts)", r, len(r.rtts))
			}
			var out bytes.Buffer
			r.write(&out)
			if !strings.HasPrefix(out.String(), "BENCH queries=") || !strings.Contains(out.String(), " p99_us=") {
				t.Fatalf("output %q", out.String())
			}
		})
	}
}

func TestQueryAndPercentile(t *testing.T) {
	q := query(0xbeef, "test.example.")
	want := []byte{0xbe, 0xef, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 4, 't', 'e', 's', 't', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 0, 1, 0, 1}
	if !bytes.Equal(q, want) {
		t.Fatalf("query % x", q)
	}
	r := result{}
	for i := 1; i <= 1000; i++ {
		r.rtts = append(r.rtts, time.Duration(i)*time.Microsecond)
	}
	if p := r.percentile(99); p != 990*time.Microsecond {
		t.Fatalf("p99 of 1..1000 µs = %v", p)
	}
	if p := r.percentile(50); p != 500*time.Microsecond {
		t.Fatalf("p50 = %v", p)
	}
}

func TestWaitGivesUp(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := c.LocalAddr().String()
	c.Close()
	if err := waitAnswer(context.Background(), addr, "test.example", 300*time.Millisecond); err == nil {
		t.Fatal("waitAnswer succeeded with nothing listening")
	}
	live := server(t, func(q []byte) []byte { return reply(q, 0) })
	if err := waitAnswer(context.Background(), live, "test.example", time.Second); err != nil {
		t.Fatal(err)
	}
}
