package stdengine

import (
	"context"

	"github.com/bal-lb/bal/engine"
)

var _ engine.Resetter = (*Engine)(nil)

// Reset resets every relaying connection whose backend satisfies match
// (engine.Resetter). The pairs are aborted from the caller's goroutine:
// closing their sockets ends both copy goroutines, which report Closed
// with reason.
func (e *Engine) Reset(ctx context.Context, match func(engine.Target) bool, reason engine.CloseReason) int {
	e.mu.Lock()
	if e.closing {
		e.mu.Unlock()
		return 0
	}
	var hit []*pair
	for p := range e.pairs {
		p.mu.Lock()
		t, done := p.target, p.aborted
		p.mu.Unlock()
		if !done && t.Addr.IsValid() && match(t) {
			hit = append(hit, p)
		}
	}
	e.mu.Unlock()
	n := 0
	for _, p := range hit {
		if ctx.Err() != nil {
			break
		}
		p.abort(reason, true)
		n++
	}
	return n
}
