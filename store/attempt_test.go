// SPDX-License-Identifier: Apache-2.0

package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stargz-store/stargz-store/internal/testutil"
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
		body := w.body(io.NopCloser(&slowReader{ctx: ctx, chunk: chunk, every: every, left: size}))
		if _, err := io.Copy(io.Discard, body); err != nil {
			return transient(err)
		}
		return nil
	}
}

// slowReader delivers chunk bytes every every (in as many reads as it
// takes), left bytes in all, or fails with the context's error.
type slowReader struct {
	ctx   context.Context
	chunk int
	every time.Duration
	left  int
	avail int // of the current chunk
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if r.avail == 0 {
		t := time.NewTimer(r.every)
		defer t.Stop()
		select {
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		case <-t.C:
		}
		r.avail = r.chunk
	}
	n := min(len(p), r.avail, r.left)
	r.left -= n
	r.avail -= n
	return n, nil
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

// fakeTransport answers range requests for blob (testBlob if nil): each
// request gets the next behaviour in turn ("ok", "stall" after 5 bytes,
// "503"), the last one repeating. It counts the stalled bodies still
// being read.
type fakeTransport struct {
	blob []byte

	mu      sync.Mutex
	modes   []string
	n       int
	stalled int
}

func (f *fakeTransport) setModes(modes ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.modes, f.n = modes, 0
}

func (f *fakeTransport) stalling() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stalled
}

func (f *fakeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	f.mu.Lock()
	mode := f.modes[min(f.n, len(f.modes)-1)]
	f.n++
	f.mu.Unlock()
	blob := f.blob
	if blob == nil {
		blob = testBlob
	}
	var first, last int64
	if _, err := fmt.Sscanf(req.Header.Get("Range"), "bytes=%d-%d", &first, &last); err != nil {
		return nil, err
	}
	resp := &http.Response{StatusCode: http.StatusPartialContent, Request: req,
		Header: http.Header{"Content-Range": {fmt.Sprintf("bytes %d-%d/%d", first, last, len(blob))}}}
	data := blob[first : last+1]
	switch mode {
	case "503":
		resp.StatusCode, data = http.StatusServiceUnavailable, nil
	case "stall":
		f.mu.Lock()
		f.stalled++
		f.mu.Unlock()
		stall := &slowReader{ctx: req.Context(), left: 1, chunk: 1, every: time.Hour}
		resp.Body = &countedBody{Reader: io.MultiReader(bytes.NewReader(data[:5]), stall), f: f}
		return resp, nil
	}
	resp.Body = io.NopCloser(bytes.NewReader(data))
	return resp, nil
}

// countedBody is a stalled body; closing it ends its count.
type countedBody struct {
	io.Reader
	f    *fakeTransport
	once sync.Once
}

func (b *countedBody) Close() error {
	b.once.Do(func() {
		b.f.mu.Lock()
		b.f.stalled--
		b.f.mu.Unlock()
	})
	return nil
}

func fakeBlob(tr *fakeTransport, p retryPolicy) *remoteBlob {
	size := int64(len(testBlob))
	if tr.blob != nil {
		size = int64(len(tr.blob))
	}
	b := &remoteBlob{digest: "sha256:x", size: size, policy: p, log: slog.New(slog.DiscardHandler),
		eps: []blobEndpoint{{host: "fake", url: "http://fake/v2/x/blobs/sha256:x", client: &http.Client{Transport: tr}}}}
	return b
}

// TestLayerReadTimeoutEndsItsFetch: a reader waits at most ReadTimeout,
// and the fetch it started (detached, other readers may join it) ends
// then too, without the layer being closed.
func TestLayerReadTimeoutEndsItsFetch(t *testing.T) {
	files := []testutil.File{{Name: "a", Data: strings.Repeat("stalled body ", 1000)}}
	layer := testutil.ESGZLayer(t, testutil.Tar(t, files...), testutil.ESGZOptions{ChunkSize: 4096})
	synctest.Test(t, func(t *testing.T) {
		tr := &fakeTransport{blob: layer.Blob, modes: []string{"ok"}}
		desc := LayerDesc{Digest: layer.Desc.Digest, Size: layer.Desc.Size, TOCDigest: layer.TOCDigest}
		l, err := OpenLayer(t.Context(), fakeBlob(tr, testPolicy), desc, LayerOptions{ReadTimeout: testPolicy.budget})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		tr.setModes("stall")
		ent, _ := l.Index().Lookup("a")
		start := time.Now()
		_, err = l.ReadAt(t.Context(), ent, make([]byte, 100), 0)
		if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took != testPolicy.budget {
			t.Errorf("ReadAt = %v after %s, want a timeout after ReadTimeout %s", err, took, testPolicy.budget)
		}
		if !strings.Contains(fmt.Sprint(err), "read timeout") {
			t.Errorf("ReadAt = %v, want it to name the read timeout", err)
		}
		synctest.Wait()
		if n := tr.stalling(); n != 0 {
			t.Errorf("%d requests still running after the reader gave up", n)
		}
	})
}

func TestRemoteBlobStalledBody(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := fakeBlob(&fakeTransport{modes: []string{"stall", "ok"}}, testPolicy)
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

func TestRemoteBlobReadTimeout(t *testing.T) {
	for _, mode := range []string{"stall", "503"} {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				b := fakeBlob(&fakeTransport{modes: []string{mode}}, testPolicy)
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
		tr := &fakeTransport{modes: []string{"stall"}}
		b := fakeBlob(tr, testPolicy)
		b.onHost(&registryHost{requests: newLimiter(8, 2)})
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
		tr.setModes("ok")
		if took, err := read(); err != nil || took != 0 {
			t.Errorf("read once the host answers = %v after %s, want at once", err, took)
		}
		if b.out.down() {
			t.Error("outage still noted after an answer")
		}
		tr.setModes("stall")
		if took, _ := read(); took != testPolicy.budget {
			t.Errorf("first read of a new outage took %s, want ReadTimeout", took)
		}
		time.Sleep(outageMemo)
		if took, _ := read(); took != testPolicy.budget {
			t.Errorf("read after outageMemo without reads took %s, want ReadTimeout again", took)
		}
	})
}
