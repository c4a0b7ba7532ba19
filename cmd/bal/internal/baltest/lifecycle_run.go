package baltest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Runner runs bal CLI commands with a given BAL_HOME, user and network
// namespace, without a running Proc (start -d, doctor on a crafted home,
// a second user's commands).
type Runner struct {
	Home     string   // BAL_HOME (and HOME)
	UID, GID int      // -1: the test's own user
	NetNS    string   // "": the test's namespace
	Env      []string // extra "K=V"
	Dir      string   // working directory ("": the test's), for relative -c paths
}

// Result is one finished command.
type Result struct {
	Code           int // exit code; -1 when it was killed at the timeout
	Stdout, Stderr string
	Took           time.Duration
	TimedOut       bool
}

// AsRunner is a Runner for this Proc's home, user and namespace.
func (p *Proc) AsRunner() Runner {
	return Runner{Home: p.Home, UID: p.uid, GID: p.gid, NetNS: p.netns, Env: p.env}
}

// UID is the uid bal runs as (-1: the test's own).
func (p *Proc) UID() int { return p.uid }

// RunFor is Run with a timeout: a command still running after timeout is
// killed and reported with TimedOut (the test decides whether that fails).
func (p *Proc) RunFor(timeout time.Duration, args ...string) Result {
	p.T.Helper()
	return p.AsRunner().Run(p.T, timeout, args...)
}

// Command builds the command without starting it.
func (r Runner) Command(ctx context.Context, args ...string) *exec.Cmd {
	name := Bin
	if r.NetNS != "" {
		args = append([]string{"netns", "exec", r.NetNS, Bin}, args...)
		name = "ip"
	}
	c := exec.CommandContext(ctx, name, args...)
	c.Env = append(os.Environ(), "BAL_HOME="+r.Home, "HOME="+r.Home)
	c.Env = append(c.Env, r.Env...)
	if r.UID >= 0 {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(r.UID), Gid: uint32(r.GID)}}
	}
	c.Dir = r.Dir
	c.WaitDelay = time.Second
	return c
}

// Run runs one bal command and waits up to timeout for it.
func (r Runner) Run(t testing.TB, timeout time.Duration, args ...string) Result {
	t.Helper()
	NeedBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := r.Command(ctx, args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	start := time.Now()
	err := c.Run()
	res := Result{Stdout: out.String(), Stderr: errb.String(), Took: time.Since(start)}
	if ctx.Err() != nil {
		res.Code, res.TimedOut = -1, true
		return res
	}
	if res.Code, err = ExitCode(err); err != nil {
		t.Fatalf("bal %v: %v", args, err)
	}
	return res
}

// ExitCode is the exit code of a command that ended with err (what
// exec.Cmd's Run or Wait returned): 0 for nil, the code of an
// *exec.ExitError (-1 when a signal ended it); any other error means it did
// not run, and is returned with -1.
func ExitCode(err error) (int, error) {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		return ee.ExitCode(), nil
	}
	return -1, err
}
