//go:build linux

package baltest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A real browser for the status page's tests: Debian's chromium, headless,
// installed with apt-get when it is missing (the test skips, saying why,
// only when that install fails). DumpDOM and Screenshot run it once per
// call; Browser drives one long-lived instance over the DevTools protocol
// on --remote-debugging-pipe, so a test can watch a page change without
// reloading it.

var chromium struct {
	once sync.Once
	path string
	err  error
}

// Chromium returns the chromium binary, installing Debian's package first
// when it is not on PATH; it skips t when that is impossible.
func Chromium(t testing.TB) string {
	t.Helper()
	chromium.once.Do(func() {
		if p, err := exec.LookPath("chromium"); err == nil {
			chromium.path = p
			return
		}
		if os.Geteuid() != 0 {
			chromium.err = errors.New("chromium is not installed and installing it needs root (apt-get install chromium)")
			return
		}
		install := func(args ...string) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			c := exec.CommandContext(ctx, "apt-get", args...)
			c.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			out, err := c.CombinedOutput()
			if err != nil {
				return fmt.Errorf("apt-get %s: %w: %s", strings.Join(args, " "), err, lastLines(out, 5))
			}
			return nil
		}
		err := install("install", "-y", "-q", "--no-install-recommends", "chromium")
		if err != nil { // the package lists may be missing or stale
			if uerr := install("update", "-q"); uerr == nil {
				err = install("install", "-y", "-q", "--no-install-recommends", "chromium")
			}
		}
		if err != nil {
			chromium.err = fmt.Errorf("chromium is not installed and could not be installed: %w", err)
			return
		}
		chromium.path, chromium.err = exec.LookPath("chromium")
	})
	if chromium.err != nil {
		t.Skipf("status page browser test skipped: %v", chromium.err)
	}
	return chromium.path
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], " | ")
}

// headless are the flags of every run: no sandbox (tests run as root), no
// GPU, no network of its own (QUIC, updates, sync, background requests),
// a throw-away profile.
func headless(t testing.TB) []string {
	return []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir()}
}

// DumpDOM loads url headless, lets its scripts run for budget of virtual
// time (timers fire without waiting; network requests still complete for
// real), and returns the DOM serialized as HTML.
func DumpDOM(t testing.TB, url string, budget time.Duration) string {
	t.Helper()
	args := append(headless(t), fmt.Sprintf("--virtual-time-budget=%d", budget.Milliseconds()), "--dump-dom", url)
	out, err := runChromium(t, args...)
	if err != nil {
		t.Fatalf("chromium --dump-dom %s: %v", url, err)
	}
	return string(out)
}

// Screenshot loads url like DumpDOM and writes a PNG of a width×height
// window to path.
func Screenshot(t testing.TB, url, path string, width, height int, budget time.Duration) {
	t.Helper()
	args := append(headless(t), fmt.Sprintf("--virtual-time-budget=%d", budget.Milliseconds()),
		fmt.Sprintf("--window-size=%d,%d", width, height), "--hide-scrollbars", "--screenshot="+path, url)
	if _, err := runChromium(t, args...); err != nil {
		t.Fatalf("chromium --screenshot %s: %v", url, err)
	}
}

func runChromium(t testing.TB, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, Chromium(t), args...)
	ownGroup(c)
	var stderr bytes.Buffer
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return out, fmt.Errorf("%w: %s", err, lastLines(stderr.Bytes(), 8))
	}
	return out, nil
}

// Browser is one headless chromium driven over the DevTools protocol on
// --remote-debugging-pipe (JSON messages separated by NUL bytes: commands
// on its fd 3, answers and events on its fd 4). The cleanup closes it.
type Browser struct {
	t    testing.TB
	cmd  *exec.Cmd
	w    *os.File // our end of its fd 3
	mu   sync.Mutex
	next int
	wait map[int]chan cdpAnswer
	done chan struct{}
}

type cdpAnswer struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// StartBrowser starts chromium headless with the DevTools pipe.
func StartBrowser(t testing.TB) *Browser {
	t.Helper()
	bin := Chromium(t)
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	evR, evW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command(bin, append(headless(t), "--remote-debugging-pipe", "about:blank")...)
	c.ExtraFiles = []*os.File{cmdR, evW} // fd 3: commands in, fd 4: answers out
	ownGroup(c)
	var stderr lockedBuffer
	c.Stderr = &stderr
	if err := c.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	cmdR.Close()
	evW.Close()
	b := &Browser{t: t, cmd: c, w: cmdW, wait: map[int]chan cdpAnswer{}, done: make(chan struct{})}
	go b.read(evR)
	t.Cleanup(func() {
		b.w.Close() // chromium exits when its pipe closes
		select {
		case <-b.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL) // its process group: the browser and its helpers
			<-b.done
		}
		_ = c.Wait()
		evR.Close()
		if t.Failed() {
			t.Logf("chromium stderr:\n%s", lastLines([]byte(stderr.String()), 20))
		}
	})
	return b
}

func (b *Browser) read(r *os.File) {
	defer close(b.done)
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		msg, err := br.ReadBytes(0)
		if err != nil {
			b.mu.Lock()
			for id, ch := range b.wait {
				close(ch)
				delete(b.wait, id)
			}
			b.mu.Unlock()
			return
		}
		var m struct {
			ID int `json:"id"`
			cdpAnswer
		}
		if json.Unmarshal(msg[:len(msg)-1], &m) != nil || m.ID == 0 {
			continue // an event
		}
		b.mu.Lock()
		ch := b.wait[m.ID]
		delete(b.wait, m.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- m.cdpAnswer
		}
	}
}

// call sends method with params (to the page session when session is not
// "") and returns the result.
func (b *Browser) call(session, method string, params any) (json.RawMessage, error) {
	b.mu.Lock()
	b.next++
	id := b.next
	ch := make(chan cdpAnswer, 1)
	b.wait[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method, "params": params}
	if session != "" {
		msg["sessionId"] = session
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	if _, err := b.w.Write(append(data, 0)); err != nil {
		return nil, fmt.Errorf("%s: %w", method, err)
	}
	select {
	case a, ok := <-ch:
		switch {
		case !ok:
			return nil, fmt.Errorf("%s: chromium closed its pipe", method)
		case a.Error != nil:
			return nil, fmt.Errorf("%s: %s", method, a.Error.Message)
		}
		return a.Result, nil
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("%s: no answer within 30 s", method)
	}
}

// Page is one tab of a Browser.
type Page struct {
	b       *Browser
	session string
}

// Open opens url in a new tab.
func (b *Browser) Open(url string) *Page {
	b.t.Helper()
	res, err := b.call("", "Target.createTarget", map[string]any{"url": url})
	if err != nil {
		b.t.Fatal(err)
	}
	var tg struct {
		TargetID string `json:"targetId"`
	}
	if err := json.Unmarshal(res, &tg); err != nil {
		b.t.Fatal(err)
	}
	res, err = b.call("", "Target.attachToTarget", map[string]any{"targetId": tg.TargetID, "flatten": true})
	if err != nil {
		b.t.Fatal(err)
	}
	var at struct {
		SessionID string `json:"sessionId"`
	}
	if err := json.Unmarshal(res, &at); err != nil {
		b.t.Fatal(err)
	}
	return &Page{b: b, session: at.SessionID}
}

// Eval evaluates a JavaScript expression in the page and decodes its value
// (returned by value) into out.
func (p *Page) Eval(expr string, out any) error {
	res, err := p.b.call(p.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	if err != nil {
		return err
	}
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		return err
	}
	if r.ExceptionDetails != nil {
		return fmt.Errorf("evaluating %q: %s", expr, r.ExceptionDetails.Text)
	}
	if out == nil || len(r.Result.Value) == 0 {
		return nil
	}
	return json.Unmarshal(r.Result.Value, out)
}

// ownGroup starts chromium in a process group of its own (its PID), so
// that a stuck browser is ended with its helper processes, and nothing
// else.
func ownGroup(c *exec.Cmd) {
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if c.Cancel != nil { // made with CommandContext: the deadline ends the group
		c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	}
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
