// Command startup measures a proxy's start-up time: from spawning its
// process to the first successful connect and HTTP response through it.
//
//	startup -addr 127.0.0.1:9295 [-n 5] -- taskset -c 1 bin/bal start -c cfg.yaml
//
// It spawns the command -n times (one at a time), polls -addr every 200 µs
// with a connect and a GET of -path until a 200 answer arrives, records the
// time since the spawn, then stops the process (SIGTERM, SIGKILL after
// -stop) and waits for it. It prints
//
//	startup_ms=12.345 runs=12.1,12.3,12.9
//
// with the median in startup_ms. With -wait and no command, it only polls
// -addr until an answer arrives or -timeout passes (a readiness check for
// scripts) and exits 0 or 1.
//
// On SIGINT or SIGTERM it kills the process it spawned before exiting.
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
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "", "address to probe host:port")
	path := flag.String("path", "/small", "HTTP path to request")
	n := flag.Int("n", 5, "spawns to measure")
	wait := flag.Bool("wait", false, "only wait until -addr answers (no command)")
	pid := flag.Int("pid", 0, "with -wait: give up when this process has exited")
	timeout := flag.Duration("timeout", 10*time.Second, "give up on one start after this long")
	stop := flag.Duration("stop", 10*time.Second, "SIGKILL a process still running this long after SIGTERM")
	flag.Parse()
	if *addr == "" || (*wait == (flag.NArg() > 0)) || *n <= 0 {
		fmt.Fprintln(os.Stderr, "usage: startup -addr HOST:PORT [-n N] -- COMMAND ARGS...  |  startup -addr HOST:PORT -wait")
		os.Exit(2)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	p := prober{addr: *addr, req: []byte("GET " + *path + " HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")}
	if *wait {
		var exited <-chan struct{}
		if *pid > 0 {
			exited = watchPID(ctx, *pid)
		}
		if _, err := p.until(ctx, time.Now(), *timeout, exited); err != nil {
			fmt.Fprintln(os.Stderr, "startup:", err)
			os.Exit(1)
		}
		return
	}
	var runs []time.Duration
	for i := 0; i < *n; i++ {
		d, err := spawnOnce(ctx, p, flag.Args(), *timeout, *stop)
		if err != nil {
			fmt.Fprintf(os.Stderr, "startup: run %d: %v\n", i+1, err)
			os.Exit(1)
		}
		runs = append(runs, d)
	}
	fmt.Println(format(runs))
}

// spawnOnce starts the command, waits for the first answer through it, and
// stops it again.
func spawnOnce(ctx context.Context, p prober, argv []string, timeout, stop time.Duration) (time.Duration, error) {
	// Refuse to measure a port that something else already answers on.
	if c, err := net.DialTimeout("tcp", p.addr, 100*time.Millisecond); err == nil {
		_ = c.Close()
		return 0, fmt.Errorf("%s already accepts connections before the spawn", p.addr)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	d, err := p.until(ctx, start, timeout, exited)
	if errors.Is(err, errExited) {
		err = fmt.Errorf("%w (%v)", err, waitErr)
	}
	if serr := stopProcess(cmd.Process, exited, stop); err == nil && serr != nil {
		err = serr
	}
	return d, err
}

// watchPID returns a channel closed once pid is gone or a zombie (a process
// that is not our child cannot be waited for).
func watchPID(ctx context.Context, pid int) <-chan struct{} {
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		for ctx.Err() == nil && alive(pid) {
			time.Sleep(10 * time.Millisecond)
		}
	}()
	return gone
}

// alive reports whether /proc/<pid>/stat shows a process that is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, ok := strings.Cut(string(b), ") ")
	return ok && rest != "" && rest[0] != 'Z' && rest[0] != 'X'
}

// stopProcess sends SIGTERM, then SIGKILL after grace, and waits for exit.
func stopProcess(proc *os.Process, exited <-chan struct{}, grace time.Duration) error {
	select {
	case <-exited:
		return nil
	default:
	}
	_ = proc.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(grace):
		_ = proc.Kill()
		<-exited
		return fmt.Errorf("pid %d ignored SIGTERM for %v; killed", proc.Pid, grace)
	}
}

type prober struct {
	addr string
	req  []byte
}

var (
	errTimeout = errors.New("no answer in time")
	errExited  = errors.New("process exited before answering")
)

// until polls until one probe succeeds and returns the time since start. It
// gives up when exited (nil: never) is closed.
func (p prober) until(ctx context.Context, start time.Time, timeout time.Duration, exited <-chan struct{}) (time.Duration, error) {
	deadline := start.Add(timeout)
	var last error
	for {
		last = p.once()
		if last == nil {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%s: %w after %v (last: %v)", p.addr, errTimeout, timeout, last)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-exited:
			return 0, errExited
		case <-time.After(200 * time.Microsecond):
		}
	}
}

// once is one connect and GET; nil when the answer is 200.
func (p prober) once() error {
	c, err := net.DialTimeout("tcp", p.addr, 500*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	if _, err := c.Write(p.req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
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

// format is the output line: the median and every run, in milliseconds.
func format(runs []time.Duration) string {
	ms := make([]float64, len(runs))
	parts := make([]string, len(runs))
	for i, d := range runs {
		ms[i] = float64(d.Microseconds()) / 1000
		parts[i] = strconv.FormatFloat(ms[i], 'f', 1, 64)
	}
	sorted := slices.Clone(ms)
	slices.Sort(sorted)
	med := 0.0
	if k := len(sorted); k > 0 {
		med = sorted[k/2]
		if k%2 == 0 {
			med = (sorted[k/2-1] + sorted[k/2]) / 2
		}
	}
	return fmt.Sprintf("startup_ms=%.3f runs=%s", med, strings.Join(parts, ","))
}
