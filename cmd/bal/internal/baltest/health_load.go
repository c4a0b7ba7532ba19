package baltest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Outcome is one short client connection of a Load: connect, read the
// backend's name (NameEcho or Name), close.
type Outcome struct {
	Start time.Time     // when the connect began
	Took  time.Duration // until the name was read (or the failure)
	Name  string        // the backend that answered; "" on failure
	Err   error
}

// Load opens short connections at a fixed rate until Stop.
type Load struct {
	addr    string
	rate    int
	dial    func(addr string, timeout time.Duration) (net.Conn, error)
	timeout time.Duration
	hello   string

	stop chan struct{}
	done chan struct{}
	wg   sync.WaitGroup

	mu  sync.Mutex
	res []Outcome
}

// LoadOptions configure StartLoad.
type LoadOptions struct {
	Rate    int                                                        // connections per second; default 200
	Timeout time.Duration                                              // per connection, connect and read; default 3 s
	Dial    func(addr string, timeout time.Duration) (net.Conn, error) // default: TCP from 127.0.0.2–9 in turn
	MaxOpen int                                                        // connections in flight at most; default 256
	Hello   string                                                     // written right after connecting (optional)
}

// StartLoad starts the load against addr; the cleanup stops it.
func StartLoad(t testing.TB, addr string, o LoadOptions) *Load {
	t.Helper()
	if o.Rate <= 0 {
		o.Rate = 200
	}
	if o.Timeout <= 0 {
		o.Timeout = 3 * time.Second
	}
	if o.Dial == nil {
		// Source addresses spread over 127.0.0.2–9 so that a long run at a
		// high rate does not reuse 4-tuples whose previous connection is
		// still in TIME_WAIT or LAST_ACK on loopback.
		var seq atomic.Uint32
		o.Dial = func(a string, d time.Duration) (net.Conn, error) {
			src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+seq.Add(1)%8))}
			return (&net.Dialer{Timeout: d, LocalAddr: src}).Dial("tcp", a)
		}
	}
	if o.MaxOpen <= 0 {
		o.MaxOpen = 256
	}
	l := &Load{addr: addr, rate: o.Rate, dial: o.Dial, timeout: o.Timeout, hello: o.Hello, stop: make(chan struct{}), done: make(chan struct{})}
	sem := make(chan struct{}, o.MaxOpen)
	go func() {
		defer close(l.done)
		start := time.Now()
		interval := time.Second / time.Duration(o.Rate)
		for i := 0; ; i++ {
			next := start.Add(time.Duration(i) * interval)
			if d := time.Until(next); d > 0 {
				select {
				case <-l.stop:
					return
				case <-time.After(d):
				}
			}
			select {
			case <-l.stop:
				return
			case sem <- struct{}{}:
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				defer func() { <-sem }()
				o := l.one()
				l.mu.Lock()
				l.res = append(l.res, o)
				l.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() { l.Stop() })
	return l
}

// ReadName reads a backend's name: up to a newline or EOF.
func ReadName(c net.Conn) (string, error) {
	var buf [64]byte
	n := 0
	for n < len(buf) {
		k, err := c.Read(buf[n:])
		n += k
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			return string(buf[:i]), nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) && n > 0 {
				return string(buf[:n]), nil
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
	return "", fmt.Errorf("no name in %q", buf[:n])
}

func (l *Load) one() Outcome {
	o := Outcome{Start: time.Now()}
	c, err := l.dial(l.addr, l.timeout)
	if err != nil {
		o.Took, o.Err = time.Since(o.Start), err
		return o
	}
	defer c.Close()
	_ = c.SetDeadline(o.Start.Add(l.timeout))
	if l.hello != "" {
		if _, err := io.WriteString(c, l.hello); err != nil {
			o.Took, o.Err = time.Since(o.Start), err
			return o
		}
	}
	o.Name, o.Err = ReadName(c)
	o.Took = time.Since(o.Start)
	return o
}

// Snapshot returns the outcomes so far (finished connections only).
func (l *Load) Snapshot() []Outcome {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Outcome(nil), l.res...)
}

// Stop ends the load, waits for the connections in flight and returns every
// outcome sorted by start time. It may be called more than once.
func (l *Load) Stop() []Outcome {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
	l.wg.Wait()
	out := l.Snapshot()
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// Tally counts outcomes by backend name ("" = failed) among those that
// started within [from, to).
func Tally(res []Outcome, from, to time.Time) (byName map[string]int, failed []Outcome) {
	byName = map[string]int{}
	for _, o := range res {
		if o.Start.Before(from) || !o.Start.Before(to) {
			continue
		}
		if o.Err != nil {
			failed = append(failed, o)
			continue
		}
		byName[o.Name]++
	}
	return byName, failed
}

// Percentile returns the p-th percentile (0–100) of ds (0 when empty).
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}
