// SPDX-License-Identifier: Apache-2.0

// Package limit shares a capacity between on-demand and background
// takers, so that work somebody waits for never queues behind more than
// the background work already running.
//
// The store uses one Limiter per registry host for the range requests in
// flight (one unit per request, store/remote) and one per Manager for
// the bytes its fetches hold in memory (a weight per fetch piece,
// store/fetchmem.go). Both follow the same rule, so it lives here once:
//
//   - on-demand takers may use all of the capacity and are always served
//     before background ones;
//   - background takers use at most a share of it, and start only when no
//     on-demand taker waits;
//   - within a class takers are served in order: a large one is not
//     passed by later small ones, so it is never starved;
//   - a taker asking for more than its class may hold gets all of it (its
//     weight is clamped): it waits until nothing else is taken, never
//     forever.
package limit

import (
	"context"
	"sync"
)

// Class is the priority of a taker.
type Class int

const (
	// OnDemand takers (somebody waits for their work) may take the whole
	// capacity and go first.
	OnDemand Class = iota
	// Background takers take at most the background share, and only when
	// no on-demand taker waits.
	Background
)

// Limiter is a capacity shared by on-demand and background takers. It is
// safe for concurrent use; the zero value is not usable: use New.
type Limiter struct {
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
	cls     Class
	n       int64
	granted bool // guarded by Limiter.mu
}

// New returns a Limiter of n units, bg of which background takers may
// hold. Both are at least 1, and bg at most n.
func New(n, bg int64) *Limiter {
	n = max(1, n)
	return &Limiter{max: n, bgMax: max(1, min(bg, n))}
}

// Max returns how many units takers of class c may hold together.
func (l *Limiter) Max(c Class) int64 {
	if c == Background {
		return l.bgMax
	}
	return l.max
}

// Acquire waits until n units (clamped to what class c may hold) can be
// taken, takes them and returns how many it took, to give back with
// Release. When ctx ends first it takes nothing and returns ctx.Err().
func (l *Limiter) Acquire(ctx context.Context, c Class, n int64) (int64, error) {
	n = max(1, min(n, l.Max(c)))
	l.mu.Lock()
	if l.queueLocked(c) == 0 && l.canTakeLocked(c, n) {
		l.takeLocked(c, n)
		l.mu.Unlock()
		return n, nil
	}
	w := &waiter{ch: make(chan struct{}), cls: c, n: n}
	q := l.queue(c)
	*q = append(*q, w)
	l.mu.Unlock()
	select {
	case <-w.ch:
		return n, nil
	case <-ctx.Done():
		l.mu.Lock()
		if w.granted { // granted while we gave up: pass it on
			l.mu.Unlock()
			l.Release(c, n)
			return 0, ctx.Err()
		}
		*q = removeWaiter(*q, w)
		l.grantLocked() // a large waiter leaving may unblock smaller ones
		l.mu.Unlock()
		return 0, ctx.Err()
	}
}

// Release gives back n units of class c taken by Acquire.
func (l *Limiter) Release(c Class, n int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.busy -= n
	if c == Background {
		l.bgBusy -= n
	}
	l.grantLocked()
}

// Peak returns the most units ever taken at once.
func (l *Limiter) Peak() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peak
}

// queue returns the waiters of class c.
func (l *Limiter) queue(c Class) *[]*waiter {
	if c == Background {
		return &l.bg
	}
	return &l.fg
}

// queueLocked returns how many takers wait ahead of a new one of class
// c: background takers also wait behind every on-demand one.
func (l *Limiter) queueLocked(c Class) int {
	if c == Background {
		return len(l.fg) + len(l.bg)
	}
	return len(l.fg)
}

func (l *Limiter) canTakeLocked(c Class, n int64) bool {
	if l.busy+n > l.max {
		return false
	}
	return c != Background || (len(l.fg) == 0 && l.bgBusy+n <= l.bgMax)
}

func (l *Limiter) takeLocked(c Class, n int64) {
	l.busy += n
	if c == Background {
		l.bgBusy += n
	}
	l.peak = max(l.peak, l.busy)
}

// grantLocked serves the waiters that fit now, on-demand ones first, each
// class in order.
func (l *Limiter) grantLocked() {
	for len(l.fg) > 0 && l.canTakeLocked(OnDemand, l.fg[0].n) {
		l.grantFirstLocked(&l.fg)
	}
	for len(l.bg) > 0 && l.canTakeLocked(Background, l.bg[0].n) {
		l.grantFirstLocked(&l.bg)
	}
}

func (l *Limiter) grantFirstLocked(q *[]*waiter) {
	w := (*q)[0]
	*q = (*q)[1:]
	l.takeLocked(w.cls, w.n)
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
