//go:build linux

package gnetengine

import (
	"context"
	"time"

	"github.com/panjf2000/gnet/v2/pkg/queue"

	"github.com/bal-lb/bal/engine"
)

var _ engine.Resetter = (*Engine)(nil)

// Reset resets every relaying connection whose backend satisfies match
// (engine.Resetter). Each data loop runs the reset on its own goroutine,
// queued like any other task, so pairs are only ever touched by their loop.
// The tasks are queued while holding the engine's lifecycle lock, so that
// they are ahead of a later stop in every loop's queue (loops run tasks in
// order) and never queued on a loop that was already released.
func (e *Engine) Reset(ctx context.Context, match func(engine.Target) bool, reason engine.CloseReason) int {
	// Drain holds the lifecycle lock until its connections are gone, and a
	// draining engine resets nothing: wait for the lock only while no stop
	// was asked for.
	if ctx.Err() != nil {
		return 0
	}
	for !e.mu.TryLock() {
		if e.stopping.Load() || ctx.Err() != nil {
			return 0
		}
		time.Sleep(time.Millisecond)
	}
	if e.state != stateRunning || e.stopping.Load() {
		e.mu.Unlock()
		return 0
	}
	counts := make(chan int, len(e.loops))
	queued := 0
	for _, l := range e.loops {
		task := func(any) error {
			counts <- l.reset(match, reason)
			return nil
		}
		if err := l.poller.Trigger(queue.HighPriority, task, nil); err != nil {
			e.log.Error("queueing a reset on a data loop failed", "loop", l.id, "err", err)
			continue
		}
		queued++
	}
	e.mu.Unlock()
	n := 0
	for range queued {
		select {
		case c := <-counts:
			n += c
		case <-ctx.Done():
			return n
		}
	}
	return n
}

// reset resets the loop's relaying pairs whose backend satisfies match; it
// runs on the loop goroutine.
func (l *loop) reset(match func(engine.Target) bool, reason engine.CloseReason) int {
	n := 0
	for fd, p := range l.fds {
		if p == nil || p.cfd != fd || p.state == stClosed || p.state == stConnecting {
			continue
		}
		if p.info.Backend.Addr.IsValid() && match(p.info.Backend) {
			p.finish(reason, true, true)
			n++
		}
	}
	return n
}
