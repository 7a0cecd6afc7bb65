// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// RangeTransport is an http.RoundTripper that answers single range
// requests for Blob from memory, whatever the URL: each request gets the
// next behaviour in turn ("ok", "stall" after 5 bytes, "503"), the last
// one repeating. It counts the stalled bodies still being read. Safe for
// concurrent use.
type RangeTransport struct {
	blob []byte

	// mu guards the fields below.
	mu      sync.Mutex
	modes   []string
	n       int
	stalled int
}

// NewRangeTransport returns a RangeTransport for blob with modes.
func NewRangeTransport(blob []byte, modes ...string) *RangeTransport {
	return &RangeTransport{blob: blob, modes: modes}
}

// SetModes starts the behaviours over with modes.
func (f *RangeTransport) SetModes(modes ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.modes, f.n = modes, 0
}

// Stalling returns how many stalled bodies are still open.
func (f *RangeTransport) Stalling() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stalled
}

// RoundTrip answers req as the next mode says.
func (f *RangeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	f.mu.Lock()
	mode := f.modes[min(f.n, len(f.modes)-1)]
	f.n++
	f.mu.Unlock()
	var first, last int64
	if _, err := fmt.Sscanf(req.Header.Get("Range"), "bytes=%d-%d", &first, &last); err != nil {
		return nil, err
	}
	resp := &http.Response{StatusCode: http.StatusPartialContent, Request: req,
		Header: http.Header{"Content-Range": {fmt.Sprintf("bytes %d-%d/%d", first, last, len(f.blob))}}}
	data := f.blob[first : last+1]
	switch mode {
	case "503":
		resp.StatusCode, data = http.StatusServiceUnavailable, nil
	case "stall":
		f.mu.Lock()
		f.stalled++
		f.mu.Unlock()
		stall := &SlowReader{Ctx: req.Context(), Left: 1, Chunk: 1, Every: time.Hour}
		resp.Body = &countedBody{Reader: io.MultiReader(bytes.NewReader(data[:5]), stall), f: f}
		return resp, nil
	}
	resp.Body = io.NopCloser(bytes.NewReader(data))
	return resp, nil
}

// countedBody is a stalled body; closing it ends its count.
type countedBody struct {
	io.Reader
	f    *RangeTransport
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

// SlowReader delivers Chunk bytes every Every (in as many reads as it
// takes), Left bytes in all, or fails with Ctx's error. Under
// testing/synctest its waits take no real time.
type SlowReader struct {
	Ctx   context.Context
	Chunk int
	Every time.Duration
	Left  int
	avail int // of the current chunk
}

func (r *SlowReader) Read(p []byte) (int, error) {
	if r.Left == 0 {
		return 0, io.EOF
	}
	if r.avail == 0 {
		t := time.NewTimer(r.Every)
		defer t.Stop()
		select {
		case <-r.Ctx.Done():
			return 0, r.Ctx.Err()
		case <-t.C:
		}
		r.avail = r.Chunk
	}
	n := min(len(p), r.avail, r.Left)
	r.Left -= n
	r.avail -= n
	return n, nil
}
