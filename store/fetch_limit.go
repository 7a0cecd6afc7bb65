// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"sync"
	"time"
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
//
// It also remembers the host's outage: a fetch gave up after ReadTimeout
// of transient failures. For outageMemo after that, fetches from the host
// make a single attempt bounded by probeTimeout (a probe) instead of
// retrying for ReadTimeout: the kernel answers a failed read by reading
// the same pages again at once (a failed readahead is followed by a
// synchronous read, and some programs fall back from sendfile to read),
// which would otherwise make an application wait two or three times
// ReadTimeout for its EIO, and every read would wait ReadTimeout while
// the registry is down. A failed probe renews the memo, an answer ends
// it.
type limiter struct {
	max, bgMax int

	// mu guards the fields below.
	mu     sync.Mutex
	busy   int // slots in use
	bgBusy int // of which background
	fg, bg []*waiter
	downAt time.Time // when an outage was last noted; zero after an answer
}

type waiter struct {
	ch      chan struct{} // closed when granted
	bg      bool
	granted bool // guarded by limiter.mu
}

// outageMemo is how long a noted outage turns fetches into probes, and
// probeTimeout the bound on a probe's progress (FetchTimeout if less).
const (
	outageMemo   = 10 * time.Second
	probeTimeout = 2 * time.Second
)

// noteOutage records that a fetch gave up on the host, and reports
// whether the host was up until now.
func (l *limiter) noteOutage() bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	was := l.downAt.IsZero() || time.Since(l.downAt) >= outageMemo
	l.downAt = time.Now()
	return was
}

// noteUp records that the host answered, and reports whether an outage
// ended.
func (l *limiter) noteUp() bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	was := !l.downAt.IsZero()
	l.downAt = time.Time{}
	return was
}

// down reports whether an outage was noted less than outageMemo ago.
func (l *limiter) down() bool {
	if l == nil {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.downAt.IsZero() && time.Since(l.downAt) < outageMemo
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
