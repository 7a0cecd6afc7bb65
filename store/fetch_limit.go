// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"sync"
)

// backgroundKey marks a context whose requests are background work
// (prefetch after the lookup returned, background fetch).
type backgroundKey struct{}

func withBackground(ctx context.Context, bg bool) context.Context {
	if !bg || isBackground(ctx) {
		return ctx
	}
	return context.WithValue(ctx, backgroundKey{}, true)
}

func isBackground(ctx context.Context) bool {
	bg, _ := ctx.Value(backgroundKey{}).(bool)
	return bg
}

// limiter bounds the range requests in flight to one registry. On-demand
// requests take any free slot and are always served before background
// ones; background requests use at most bgMax slots and start only when
// no on-demand request waits. So a file read never queues behind more than
// the background requests already running.
type limiter struct {
	max, bgMax int

	// mu guards the fields below.
	mu     sync.Mutex
	busy   int // slots in use
	bgBusy int // of which background
	fg, bg []*waiter
}

type waiter struct {
	ch      chan struct{} // closed when granted
	bg      bool
	granted bool // guarded by limiter.mu
}

func newLimiter(n, bgN int) *limiter {
	n = max(1, n)
	return &limiter{max: n, bgMax: max(1, min(bgN, n))}
}

// acquire waits for a slot and returns its release function.
func (l *limiter) acquire(ctx context.Context, bg bool) (func(), error) {
	l.mu.Lock()
	if l.canTakeLocked(bg) {
		l.takeLocked(bg)
		l.mu.Unlock()
		return func() { l.release(bg) }, nil
	}
	w := &waiter{ch: make(chan struct{}), bg: bg}
	if bg {
		l.bg = append(l.bg, w)
	} else {
		l.fg = append(l.fg, w)
	}
	l.mu.Unlock()
	select {
	case <-w.ch:
		return func() { l.release(bg) }, nil
	case <-ctx.Done():
		l.mu.Lock()
		if w.granted { // granted while we gave up: pass it on
			l.mu.Unlock()
			l.release(bg)
			return nil, ctx.Err()
		}
		if bg {
			l.bg = removeWaiter(l.bg, w)
		} else {
			l.fg = removeWaiter(l.fg, w)
		}
		l.mu.Unlock()
		return nil, ctx.Err()
	}
}

func (l *limiter) canTakeLocked(bg bool) bool {
	if l.busy >= l.max {
		return false
	}
	return !bg || (len(l.fg) == 0 && l.bgBusy < l.bgMax)
}

func (l *limiter) takeLocked(bg bool) {
	l.busy++
	if bg {
		l.bgBusy++
	}
}

func (l *limiter) release(bg bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.busy--
	if bg {
		l.bgBusy--
	}
	for len(l.fg) > 0 && l.canTakeLocked(false) {
		l.grantLocked(&l.fg)
	}
	for len(l.bg) > 0 && l.canTakeLocked(true) {
		l.grantLocked(&l.bg)
	}
}

func (l *limiter) grantLocked(q *[]*waiter) {
	w := (*q)[0]
	*q = (*q)[1:]
	l.takeLocked(w.bg)
	w.granted = true
	close(w.ch)
}

func removeWaiter(q []*waiter, w *waiter) []*waiter {
	for i, x := range q {
		if x == w {
			return append(q[:i:i], q[i+1:]...)
		}
	}
	return q
}
