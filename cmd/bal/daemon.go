package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/bal-lb/bal/engine/config"
	"github.com/bal-lb/bal/engine/logfile"
	"github.com/bal-lb/bal/engine/pidfile"
	"github.com/bal-lb/bal/engine/server"
)

// bal start -d: the parent validates the config, then re-executes itself as
// the daemon (a new session, stdio on /dev/null, working directory /) with a
// readiness pipe as fd 3. The daemon answers on the pipe with one line once
// it listens and its control socket answers ("ready\t<listen>\t<engine>"),
// or with the reason it could not start ("error\t<message>"). The parent
// exits 0 only on "ready"; on an error, the daemon's death or a timeout it
// exits 1 with the reason.

// envReadyFD tells a bal start that it is the daemon child and which
// descriptor is the readiness pipe. It is internal: the child unsets it.
const envReadyFD = "BAL_DAEMON_READY_FD"

// readyFD is the readiness pipe's descriptor in the child (ExtraFiles[0]).
const readyFD = 3

// daemonReadyTimeout bounds how long the parent waits for the daemon.
const daemonReadyTimeout = 60 * time.Second

// startDaemon is the parent side of bal start -d.
func startDaemon(e *env, flagPath string) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(e.stderr, "bal start: "+format+"\n", args...)
		return exitFail
	}
	snap, home, err := loadForStart(e, flagPath)
	if err != nil {
		return fail("%v", err)
	}
	if err := ensureHome(home); err != nil {
		return fail("%v", err)
	}
	pidPath := filepath.Join(home, pidFileName)
	if pid, err := pidfile.Running(pidPath); err == nil {
		return fail("%v (PID %d, pid file %s); stop it first with 'bal stop'", pidfile.ErrRunning, pid, pidPath)
	}
	exe, err := os.Executable()
	if err != nil {
		return fail("cannot find bal's executable to start the daemon: %v", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fail("readiness pipe: %v", err)
	}
	defer r.Close()

	// snap.Path is absolute: the daemon runs in / and must not lose a
	// relative -c. BAL_HOME is passed as the absolute path resolved here.
	cmd := exec.Command(exe, "start", "-c", snap.Path)
	cmd.Env = append(withoutEnv(os.Environ(), "BAL_HOME", envReadyFD),
		"BAL_HOME="+home, fmt.Sprintf("%s=%d", envReadyFD, readyFD))
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{w} // fd 3
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// Stdin, Stdout and Stderr stay nil: /dev/null.
	if err := cmd.Start(); err != nil {
		w.Close()
		return fail("cannot start the daemon: %v", err)
	}
	w.Close() // the child holds the only write end now
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	logPath := filepath.Join(home, logFileName)
	line, err := readReady(r, daemonReadyTimeout)
	switch {
	case err == nil && strings.HasPrefix(line, "ready\t"):
		parts := strings.Split(line, "\t")
		listen, engine := parts[1], ""
		if len(parts) > 2 {
			engine = " (" + parts[2] + ")"
		}
		fmt.Fprintf(e.stdout, "bal start: daemon started (PID %d), listening on %s%s; log: %s\n", cmd.Process.Pid, listen, engine, logPath)
		_ = cmd.Process.Release()
		return exitOK
	case err == nil && strings.HasPrefix(line, "error\t"):
		waitExit(exited, 5*time.Second)
		return fail("%s", strings.TrimPrefix(line, "error\t"))
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Not ready in time: do not leave a half-started daemon behind.
		_ = cmd.Process.Kill()
		waitExit(exited, 5*time.Second)
		return fail("the daemon (PID %d) was not listening within %v; it was stopped (see %s)", cmd.Process.Pid, daemonReadyTimeout, logPath)
	default:
		// The pipe closed without a word: the daemon died.
		how := "exited"
		if werr := waitExit(exited, 5*time.Second); werr != nil {
			how = werr.Error()
		}
		return fail("the daemon (PID %d) stopped before it was ready (%s); see %s", cmd.Process.Pid, how, logPath)
	}
}

// readReady reads the daemon's one line from the readiness pipe.
func readReady(r *os.File, timeout time.Duration) (string, error) {
	_ = r.SetReadDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(io.LimitReader(r, 64<<10)).ReadString('\n')
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return "", err
		}
		if line == "" {
			return "", io.ErrUnexpectedEOF
		}
	}
	return strings.TrimSuffix(line, "\n"), nil
}

// waitExit waits a little for the child's exit status.
func waitExit(exited <-chan error, d time.Duration) error {
	select {
	case err := <-exited:
		return err
	case <-time.After(d):
		return errors.New("still running")
	}
}

// withoutEnv drops the variables named in names from env.
func withoutEnv(env []string, names ...string) []string {
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, n := range names {
			drop = drop || k == n
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}

// runDaemonChild is the daemon side of bal start -d: it logs to
// $BAL_HOME/bal.log and reports readiness or its start-up error on fd 3.
func runDaemonChild(e *env, flagPath string) int {
	_ = os.Unsetenv(envReadyFD)
	ready, err := readinessPipe()
	if err != nil {
		fmt.Fprintf(e.stderr, "bal start: %v\n", err)
		return exitFail
	}
	answered := false
	answer := func(line string) {
		if !answered {
			answered = true
			_, _ = io.WriteString(ready, line+"\n")
			_ = ready.Close()
		}
	}
	fail := func(err error) int {
		answer("error\t" + oneLine(err.Error()))
		return exitFail
	}

	home, err := config.Home()
	if err != nil {
		return fail(err)
	}
	if err := ensureHome(home); err != nil {
		return fail(err)
	}
	lf, err := logfile.Open(filepath.Join(home, logFileName))
	if err != nil {
		return fail(err)
	}
	defer lf.Close()
	// stderr is /dev/null: make it bal.log, so that a Go crash report is
	// not lost.
	_ = lf.DupTo(2)
	level := new(slog.LevelVar)
	log := slog.New(slog.NewJSONHandler(lf, &slog.HandlerOptions{Level: level}))

	snap, err := config.Load(flagPath)
	if err != nil {
		log.Error("cannot start", "error", err.Error())
		return fail(err)
	}
	in := &instance{
		home:    home,
		snap:    snap,
		log:     log,
		level:   level,
		logFile: lf,
		ready: func(st server.Status) {
			answer("ready\t" + st.Listen.String() + "\t" + st.Engine)
		},
	}
	code, err := in.run()
	if err != nil {
		log.Error("cannot start", "error", err.Error())
		return fail(err)
	}
	answer("error\tthe daemon stopped before it was ready")
	return code
}

// readinessPipe is fd 3, which must be the pipe the parent passed.
func readinessPipe() (*os.File, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(readyFD, &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFIFO {
		return nil, fmt.Errorf("%s is internal to 'bal start -d' (fd %d is not its readiness pipe)", envReadyFD, readyFD)
	}
	syscall.CloseOnExec(readyFD)
	return os.NewFile(readyFD, "readiness pipe"), nil
}
