// SPDX-License-Identifier: Apache-2.0

package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Registry requests: attempts, fetches and the one endpoint loop. The
// package doc tells the rules; this file implements them.

// progressStep is how many body bytes reset an attempt's FetchTimeout.
const progressStep = 64 << 10

// errStalled is the cause of an attempt the registry made no progress on
// for FetchTimeout.
var errStalled = errors.New("no progress from the registry")

// attemptError is a failed attempt. retry says whether the same request
// may succeed when repeated (transient); final whether no other endpoint
// should be tried either (the caller changes its request).
type attemptError struct {
	err   error
	retry bool
	final bool
}

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

// transient wraps err as a failure that may pass when the request is
// repeated.
func transient(err error) error { return &attemptError{err: err, retry: true} }

// timeoutError is the cause of a fetch ended by its budget, or of a read
// ended by WithReadTimeout. It wraps context.DeadlineExceeded.
type timeoutError struct{ d time.Duration }

func (e *timeoutError) Error() string {
	return fmt.Sprintf("no answer from the registry within the read timeout (%s)", e.d)
}
func (e *timeoutError) Unwrap() error { return context.DeadlineExceeded }

// retryPolicy is how a fetch runs its attempts. The zero value makes one
// attempt per endpoint, without a progress bound.
type retryPolicy struct {
	idle    time.Duration // FetchTimeout; 0: no progress bound
	budget  time.Duration // ReadTimeout; 0: the context's deadline only
	retries int           // rounds after the first; 0: until the budget (none without one); negative: none
	backoff time.Duration // the first delay between rounds
	maxWait time.Duration // the longest delay between rounds
}

func newRetryPolicy(o Options) retryPolicy {
	return retryPolicy{idle: o.FetchTimeout, budget: o.ReadTimeout, retries: o.Retries,
		backoff: o.Backoff, maxWait: o.MaxBackoff}
}

// probe is the policy of a fetch from a host in an outage (outage.go):
// one attempt per endpoint, without progress for at most probeTimeout.
func (p retryPolicy) probe() retryPolicy {
	p.retries = -1
	if p.idle <= 0 || p.idle > probeTimeout {
		p.idle = probeTimeout
	}
	return p
}

// unreachable reports whether a fetch that failed with errs (or, when its
// context ended, cerr) failed because the registry could not be reached
// for its whole budget: every attempt failed transiently, or its budget
// ran out.
func unreachable(errs []error, cerr error) bool {
	if cerr != nil {
		var te *timeoutError
		return errors.As(cerr, &te)
	}
	n := 0
	for _, err := range errs {
		var ae *attemptError
		if err == nil {
			continue
		}
		if !errors.As(err, &ae) || !ae.retry {
			return false
		}
		n++
	}
	return n > 0
}

// bound gives a fetch its deadline: the budget for a fetch a reader
// waits for (hard), none of its own otherwise.
func (p retryPolicy) bound(ctx context.Context, hard bool) (context.Context, context.CancelFunc) {
	if !hard {
		return ctx, func() {}
	}
	return WithReadTimeout(ctx, p.budget)
}

// WithReadTimeout gives a read the deadline d (ReadTimeout), whose cause
// says so and wraps context.DeadlineExceeded. d <= 0 means none.
func WithReadTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeoutCause(ctx, d, &timeoutError{d})
}

// attemptFunc makes one attempt against endpoint i. It calls w.start
// when its request is about to be sent, w.progress when the answer's
// headers are in, and reads the body through w.body.
type attemptFunc func(ctx context.Context, w *watchdog, i int) error

// try runs attempt against endpoints 0..n-1 as described above, starting
// with endpoint start; note, if not nil, hears of the failed attempts
// that leave the loop running. It returns the index of the endpoint that succeeded; or
// -1 and the last error of each endpoint tried; or -1 and, when ctx
// ended, its cause (with the last attempt's error).
func (p retryPolicy) try(ctx context.Context, n, start int, note func(i int, err error), attempt attemptFunc) (int, []error, error) {
	errs := make([]error, n)
	live := make([]bool, n)
	for i := range live {
		live[i] = true
	}
	begin, delay := time.Now(), p.backoff
	var last error
	for round := 0; ; round++ {
		left := 0
		for k := range n {
			i := (start + k) % n
			if !live[i] {
				continue
			}
			err := p.once(ctx, i, attempt)
			if err == nil {
				return i, nil, nil
			}
			errs[i], last = err, err
			if ctx.Err() != nil {
				return -1, nil, ctxError(ctx, last)
			}
			var ae *attemptError
			switch {
			case errors.As(err, &ae) && ae.final:
				return -1, errs, nil
			case errors.As(err, &ae) && ae.retry:
				left++
			default:
				live[i] = false
			}
			if note != nil {
				note(i, err)
			}
		}
		if left == 0 || (p.retries != 0 && round >= p.retries) || (p.retries == 0 && p.budget <= 0) ||
			(p.budget > 0 && time.Since(begin)+delay >= p.budget) {
			return -1, errs, nil
		}
		if sleep(ctx, delay) != nil {
			return -1, nil, ctxError(ctx, last)
		}
		delay = min(2*delay, max(p.maxWait, p.backoff))
	}
}

// ctxError is the error of a fetch whose context ended: its cause, with
// the last attempt's error for the log.
func ctxError(ctx context.Context, last error) error {
	cause := context.Cause(ctx)
	if last != nil && !errors.Is(last, cause) {
		return fmt.Errorf("%w (last attempt: %v)", cause, last)
	}
	return cause
}

// once runs one attempt under a watchdog: a stall becomes a transient
// error that says so.
func (p retryPolicy) once(ctx context.Context, i int, attempt attemptFunc) error {
	actx, w := watch(ctx, p.idle)
	defer w.stop()
	err := attempt(actx, w, i)
	if err != nil && ctx.Err() == nil && errors.Is(context.Cause(actx), errStalled) {
		return transient(fmt.Errorf("%w: %w", context.Cause(actx), err))
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// watchdog cancels an attempt that makes no progress for its idle time.
// Its methods may be called on nil (no bound).
type watchdog struct {
	idle   time.Duration
	t      *time.Timer // nil until start, or without a bound
	cancel context.CancelCauseFunc
}

// watch returns the attempt's context and its watchdog, not started yet.
func watch(ctx context.Context, idle time.Duration) (context.Context, *watchdog) {
	actx, cancel := context.WithCancelCause(ctx)
	return actx, &watchdog{idle: idle, cancel: cancel}
}

// start begins the idle time: the request is about to be sent (a wait
// for a request slot before it is not the registry's fault).
func (w *watchdog) start() {
	if w == nil || w.idle <= 0 || w.t != nil {
		return
	}
	idle, cancel := w.idle, w.cancel
	w.t = time.AfterFunc(idle, func() { cancel(fmt.Errorf("%w for %s", errStalled, idle)) })
}

// progress restarts the idle time.
func (w *watchdog) progress() {
	if w != nil && w.t != nil {
		w.t.Reset(w.idle)
	}
}

func (w *watchdog) stop() {
	if w.t != nil {
		w.t.Stop()
	}
	w.cancel(nil)
}

// body wraps an answer's body so that every progressStep bytes read, and
// its end, count as progress.
func (w *watchdog) body(r io.ReadCloser) io.ReadCloser {
	if w == nil || w.idle <= 0 {
		return r
	}
	return &progressBody{ReadCloser: r, w: w}
}

type progressBody struct {
	io.ReadCloser
	w    *watchdog
	got  int64 // bytes since the last progress
	done bool
}

func (b *progressBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.got += int64(n); b.got >= progressStep || (errors.Is(err, io.EOF) && !b.done) {
		b.got = 0
		b.done = errors.Is(err, io.EOF)
		b.w.progress()
	}
	return n, err
}
