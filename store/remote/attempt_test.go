// SPDX-License-Identifier: Apache-2.0

package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
)

// testPolicy is the default policy with small numbers: FetchTimeout 10 s,
// ReadTimeout 30 s, backoff 100 ms doubling to 2 s.
var testPolicy = retryPolicy{idle: 10 * time.Second, budget: 30 * time.Second, backoff: 100 * time.Millisecond, maxWait: 2 * time.Second}

// failUntil is an attempt that fails transiently until the fake clock
// reaches up, then succeeds; it records when it ran.
func failUntil(up time.Time, at *[]time.Duration, start time.Time) attemptFunc {
	return func(ctx context.Context, w *watchdog, i int) error {
		w.start()
		*at = append(*at, time.Since(start))
		if time.Now().Before(up) {
			return transient(errors.New("connection refused"))
		}
		return nil
	}
}

func TestRetryPolicyResumesAfterACut(t *testing.T) {
	for _, cut := range []time.Duration{2 * time.Second, 6 * time.Second, 12 * time.Second} {
		t.Run(cut.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				var at []time.Duration
				i, _, err := testPolicy.try(t.Context(), 1, 0, nil, failUntil(start.Add(cut), &at, start))
				took := time.Since(start)
				if i != 0 || err != nil {
					t.Fatalf("try = %d, %v; want success after the cut", i, err)
				}
				if took < cut || took > cut+testPolicy.maxWait {
					t.Errorf("success after %s, want within %s of the end of a %s cut (attempts at %v)", took, testPolicy.maxWait, cut, at)
				}
			})
		})
	}
}

func TestRetryPolicyGivesUpAtTheBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var at []time.Duration
		i, errs, cerr := testPolicy.try(t.Context(), 1, 0, nil, failUntil(start.Add(time.Hour), &at, start))
		took := time.Since(start)
		if i != -1 || cerr != nil || errs[0] == nil {
			t.Fatalf("try = %d, %v, %v; want the endpoint's error", i, errs, cerr)
		}
		if took > testPolicy.budget {
			t.Errorf("gave up after %s, want at most the budget %s", took, testPolicy.budget)
		}
		// 0, .1, .3, .7, 1.5, 3.1, then every 2 s: no attempt after 30 s.
		if want := 6 + 13; len(at) != want || at[len(at)-1] > testPolicy.budget {
			t.Errorf("attempts at %v, want %d, the last before %s", at, want, testPolicy.budget)
		}
	})
}

// stallingAttempt sends headers, then delivers chunk bytes every every,
// size bytes in all, reading them through the watchdog as a body is.
func stallingAttempt(chunk int, every time.Duration, size int) attemptFunc {
	return func(ctx context.Context, w *watchdog, i int) error {
		w.start()
		w.progress() // headers
		body := w.body(io.NopCloser(&testutil.SlowReader{Ctx: ctx, Chunk: chunk, Every: every, Left: size}))
		if _, err := io.Copy(io.Discard, body); err != nil {
			return transient(err)
		}
		return nil
	}
}

func TestRetryPolicyProgressBound(t *testing.T) {
	tests := []struct {
		name      string
		attempt   attemptFunc
		hard      bool
		wantErr   error
		wantAfter time.Duration
	}{
		// 16 MiB at 64 KiB per 9 s: slow, but moving (38 min).
		{"slow body is not cut", stallingAttempt(progressStep, 9*time.Second, 16<<20), false, nil, 256 * 9 * time.Second},
		// ... unless a reader waits for it: then the budget ends it.
		{"slow body a reader waits for", stallingAttempt(progressStep, 9*time.Second, 16<<20), true, context.DeadlineExceeded, 30 * time.Second},
		// 1 KiB per 9 s keeps a connection open but is no progress.
		{"trickle is a stall", stallingAttempt(1<<10, 9*time.Second, 16<<20), false, errStalled, 10 * time.Second},
		{"stalled body", stallingAttempt(1, time.Hour, 100), false, errStalled, 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := testPolicy
				p.retries = -1
				ctx, cancel := p.bound(t.Context(), tt.hard)
				defer cancel()
				start := time.Now()
				_, errs, cerr := p.try(ctx, 1, 0, nil, tt.attempt)
				err := errors.Join(append(errs, cerr)...)
				if took := time.Since(start); took != tt.wantAfter {
					t.Errorf("try ended after %s, want %s", took, tt.wantAfter)
				}
				if (tt.wantErr == nil) != (err == nil) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Errorf("try = %v, want %v", err, tt.wantErr)
				}
			})
		})
	}
}

func TestRetryPolicyWaitForASlotIsNotAStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, errs, cerr := testPolicy.try(t.Context(), 1, 0, nil, func(ctx context.Context, w *watchdog, i int) error {
			time.Sleep(time.Minute) // queued behind other requests (fake time)
			return stallingAttempt(100, time.Second, 100)(ctx, w, i)
		})
		if errs != nil || cerr != nil {
			t.Errorf("try = %v, %v; want success", errs, cerr)
		}
	})
}

func TestRetryPolicyEndpoints(t *testing.T) {
	tests := []struct {
		name     string
		fail     []error // per endpoint, per round; nil: success
		start    int
		wantI    int
		wantRuns string
	}{
		{"transient on the first, the second serves", []error{transient(errors.New("503")), nil}, 0, 1, "0 1"},
		{"start at the one that answered last", []error{nil, nil}, 1, 1, "1"},
		{"permanent leaves the rotation", []error{errors.New("404"), transient(errors.New("503"))}, 0, -1, "0 1 1 1"},
		{"final stops at once", []error{&attemptError{err: errNoMultiRange, final: true}, nil}, 0, -1, "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := testPolicy
				p.retries = 2
				var runs []string
				i, _, _ := p.try(t.Context(), len(tt.fail), tt.start, nil, func(ctx context.Context, w *watchdog, i int) error {
					runs = append(runs, fmt.Sprint(i))
					return tt.fail[i]
				})
				if got := strings.Join(runs, " "); i != tt.wantI || got != tt.wantRuns {
					t.Errorf("try = %d after attempts %q, want %d after %q", i, got, tt.wantI, tt.wantRuns)
				}
			})
		})
	}
}

// fakeBlob is a Blob of tr's blob (testBlob) at one endpoint, with
// policy p, on host h (nil: none).
func fakeBlob(tr *testutil.RangeTransport, p retryPolicy, h *Host) *Blob {
	named, err := refspec.Parse("fake/x:v1")
	if err != nil {
		panic(err)
	}
	b := NewBlob(named, "sha256:x", int64(len(testBlob)), []registryauth.Endpoint{{Ref: named.Named(), Host: "fake", Transport: tr}}, h, Options{})
	b.policy = p
	return b
}

func TestBlobStalledBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := fakeBlob(testutil.NewRangeTransport(testBlob, "stall", "ok"), testPolicy, nil)
		start := time.Now()
		p := make([]byte, 20)
		if n, err := b.ReadAt(t.Context(), p, 30); n != 20 || err != nil || !bytes.Equal(p, testBlob[30:50]) {
			t.Fatalf("ReadAt = %d, %v, %q", n, err, p)
		}
		if took, want := time.Since(start), testPolicy.idle+testPolicy.backoff; took != want {
			t.Errorf("ReadAt took %s, want %s (one stall, then a retry)", took, want)
		}
	})
}

func TestBlobReadTimeout(t *testing.T) {
	for _, mode := range []string{"stall", "503"} {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := fakeBlob(testutil.NewRangeTransport(testBlob, mode), testPolicy, nil)
				start := time.Now()
				_, err := b.ReadAt(t.Context(), make([]byte, 20), 30)
				took := time.Since(start)
				if !errors.Is(err, context.DeadlineExceeded) && mode == "stall" || err == nil {
					t.Errorf("ReadAt = %v, want a timeout", err)
				}
				if took > testPolicy.budget {
					t.Errorf("ReadAt gave up after %s, want at most ReadTimeout %s", took, testPolicy.budget)
				}
			})
		})
	}
}

// TestOutageProbes: once a fetch gave up on an unreachable host, reads
// (the kernel's immediate re-reads of the same pages among them) make one
// short attempt instead of waiting ReadTimeout again, until the host
// answers or outageMemo passes.
func TestOutageProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := testutil.NewRangeTransport(testBlob, "stall")
		b := fakeBlob(tr, testPolicy, NewHost(8))
		read := func() (time.Duration, error) {
			start := time.Now()
			_, err := b.ReadAt(t.Context(), make([]byte, 20), 30)
			return time.Since(start), err
		}
		if took, err := read(); err == nil || took != testPolicy.budget {
			t.Fatalf("first read during a blackhole = %v after %s, want a failure after ReadTimeout", err, took)
		}
		for range 3 {
			if took, err := read(); err == nil || took != probeTimeout {
				t.Errorf("read during the outage = %v after %s, want a failure after %s", err, took, probeTimeout)
			}
		}
		tr.SetModes("ok")
		if took, err := read(); err != nil || took != 0 {
			t.Errorf("read once the host answers = %v after %s, want at once", err, took)
		}
		if b.out.down() {
			t.Error("outage still noted after an answer")
		}
		tr.SetModes("stall")
		if took, _ := read(); took != testPolicy.budget {
			t.Errorf("first read of a new outage took %s, want ReadTimeout", took)
		}
		time.Sleep(outageMemo)
		if took, _ := read(); took != testPolicy.budget {
			t.Errorf("read after outageMemo without reads took %s, want ReadTimeout again", took)
		}
	})
}
