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

// limiter shares a capacity between on-demand and background takers: the
// range requests in flight to one registry (one unit per request), or
// the bytes a Manager's fetches hold in memory (fetchmem.go). On-demand
// takers may use all of it and are always served before background ones;
// background takers use at most bgMax and start only when no on-demand
// taker waits. So a file read never queues behind more than the
// background work already running.
//
// Within a class takers are served in order: a large one is not passed
// by later small ones, so it is never starved. A taker asking for more
// than its class may hold gets all of it (its weight is clamped): it
// waits until nothing else of the limiter is taken, never forever.
type limiter struct {
	max, bgMax int64

	// mu guards the fields below.
	mu     sync.Mutex
	busy   int64 // taken
	bgBusy int64 // of which by background takers
	peak   int64 // the most busy has been, for tests and measurements
	fg, bg []*waiter
}

type waiter struct {
	ch      chan struct{} // closed when granted
	bg      bool
	n       int64
	granted bool // guarded by limiter.mu
}

func newLimiter(n, bgN int64) *limiter {
	n = max(1, n)
	return &limiter{max: n, bgMax: max(1, min(bgN, n))}
}

// acquire waits for one unit and returns its release function.
func (l *limiter) acquire(ctx context.Context, bg bool) (func(), error) {
	n, err := l.acquireN(ctx, bg, 1)
	if err != nil {
		return nil, err
	}
	return func() { l.release(bg, n) }, nil
}

// acquireN waits until n units (clamped to what bg's class may hold) can
// be taken, takes them and returns how many it took, to give back with
// release.
func (l *limiter) acquireN(ctx context.Context, bg bool, n int64) (int64, error) {
	n = max(1, min(n, l.max))
	if bg {
		n = min(n, l.bgMax)
	}
	l.mu.Lock()
	if l.queueLocked(bg) == 0 && l.canTakeLocked(bg, n) {
		l.takeLocked(bg, n)
		l.mu.Unlock()
		return n, nil
	}
	w := &waiter{ch: make(chan struct{}), bg: bg, n: n}
	if bg {
		l.bg = append(l.bg, w)
	} else {
		l.fg = append(l.fg, w)
	}
	l.mu.Unlock()
	select {
	case <-w.ch:
		return n, nil
	case <-ctx.Done():
		l.mu.Lock()
		if w.granted { // granted while we gave up: pass it on
			l.mu.Unlock()
			l.release(bg, n)
			return 0, ctx.Err()
		}
		if bg {
			l.bg = removeWaiter(l.bg, w)
		} else {
			l.fg = removeWaiter(l.fg, w)
		}
		l.grantLocked() // a large waiter leaving may unblock smaller ones
		l.mu.Unlock()
		return 0, ctx.Err()
	}
}

// queueLocked returns how many takers wait ahead of a new one of class
// bg: background takers also wait behind every on-demand one.
func (l *limiter) queueLocked(bg bool) int {
	if bg {
		return len(l.fg) + len(l.bg)
	}
	return len(l.fg)
}

func (l *limiter) canTakeLocked(bg bool, n int64) bool {
	if l.busy+n > l.max {
		return false
	}
	return !bg || (len(l.fg) == 0 && l.bgBusy+n <= l.bgMax)
}

func (l *limiter) takeLocked(bg bool, n int64) {
	l.busy += n
	if bg {
		l.bgBusy += n
	}
	l.peak = max(l.peak, l.busy)
}

// release gives back n units taken by acquireN.
func (l *limiter) release(bg bool, n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.busy -= n
	if bg {
		l.bgBusy -= n
	}
	l.grantLocked()
}

// grantLocked serves the waiters that fit now, on-demand ones first, each
// class in order.
func (l *limiter) grantLocked() {
	for len(l.fg) > 0 && l.canTakeLocked(false, l.fg[0].n) {
		l.grantFirstLocked(&l.fg)
	}
	for len(l.bg) > 0 && l.canTakeLocked(true, l.bg[0].n) {
		l.grantFirstLocked(&l.bg)
	}
}

func (l *limiter) grantFirstLocked(q *[]*waiter) {
	w := (*q)[0]
	*q = (*q)[1:]
	l.takeLocked(w.bg, w.n)
	w.granted = true
	close(w.ch)
}

// peakBusy returns the most units ever taken at once.
func (l *limiter) peakBusy() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peak
}

func removeWaiter(q []*waiter, w *waiter) []*waiter {
	for i, x := range q {
		if x == w {
			return append(q[:i:i], q[i+1:]...)
		}
	}
	return q
}
