// SPDX-License-Identifier: Apache-2.0

// Package flight runs one call per key at a time and lets every caller wait
// for it with its own context.
//
// It differs from golang.org/x/sync/singleflight in two ways that matter to
// a FUSE server. The shared call runs on a context owned by the Group, not
// by the caller that happened to start it, so one caller giving up (a
// kernel interrupt, a Ctrl-C in one `podman run`) never aborts a fetch that
// another caller needs. And each waiter returns as soon as its own context
// is done, so the kernel request is answered promptly.
package flight

import (
	"context"
	"sync"
)

// Group de-duplicates calls by key. The zero value is not usable: use New.
// A Group is safe for concurrent use.
type Group[K comparable, V any] struct {
	ctx    context.Context // lifetime of the calls; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards the fields below.
	mu     sync.Mutex
	calls  map[K]*call[V]
	closed bool
}

type call[V any] struct {
	waiters int // callers that joined; guarded by Group.mu
	done    chan struct{}
	val     V
	err     error
}

// New returns a Group whose calls run on a context derived from parent
// without its cancellation; Close cancels them.
func New[K comparable, V any](parent context.Context) *Group[K, V] {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	return &Group[K, V]{ctx: ctx, cancel: cancel, calls: map[K]*call[V]{}}
}

// Do runs fn once for all concurrent callers with the same key and returns
// its result. fn gets the Group's context. A caller whose ctx ends first
// gets ctx.Err() while fn goes on for the others. After Close, Do returns
// context.Canceled.
func (g *Group[K, V]) Do(ctx context.Context, key K, fn func(ctx context.Context) (V, error)) (V, error) {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		var zero V
		return zero, context.Canceled
	}
	c, ok := g.calls[key]
	if !ok {
		c = &call[V]{done: make(chan struct{})}
		g.calls[key] = c
		g.wg.Add(1)
		go g.run(key, c, fn)
	}
	c.waiters++
	g.mu.Unlock()
	select {
	case <-c.done:
		return c.val, c.err
	case <-ctx.Done():
		var zero V
		return zero, ctx.Err()
	}
}

func (g *Group[K, V]) run(key K, c *call[V], fn func(ctx context.Context) (V, error)) {
	defer g.wg.Done()
	c.val, c.err = fn(g.ctx)
	g.mu.Lock()
	delete(g.calls, key)
	g.mu.Unlock()
	close(c.done)
}

// Close cancels the running calls and waits for them to return. It is
// idempotent.
func (g *Group[K, V]) Close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.cancel()
	g.wg.Wait()
}
