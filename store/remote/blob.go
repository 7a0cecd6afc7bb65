// SPDX-License-Identifier: Apache-2.0

package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/stargz-store/stargz-store/internal/limit"
	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
)

// Blob reads ranges of one blob from a registry with HTTP range
// requests, through the endpoint loop (mirrors first, the primary last,
// starting from the one that answered last). Several ranges go in one
// multi-range request until the registry refuses one or answers one
// wrongly; from then on the blob is read one range per request. Safe for
// concurrent use.
type Blob struct {
	endpoints
	digest digest.Digest
	size   int64

	good   atomic.Int32 // index of the endpoint that answered last
	reads  atomic.Int64 // Read requests, to tell a layer whose files are read
	warned atomic.Bool  // a 200 for a range request was logged
	single atomic.Bool  // multi-range requests are off or were refused
}

// NewBlob returns the reader of blob d of ref, size bytes, at eps
// (mirrors first, the primary last). Its requests count against h's
// limit and its failures against h's outage memo; a nil h has neither.
func NewBlob(ref refspec.Reference, d digest.Digest, size int64, eps []registryauth.Endpoint, h *Host, o Options) *Blob {
	b := &Blob{endpoints: newEndpoints(ref, eps, h, o), digest: d, size: size}
	b.single.Store(o.SingleRange)
	return b
}

// Priority says who waits for a read, which decides three things: its
// class in the host's request limit, whether it counts as a read of the
// blob (Reads), and whether it ends at ReadTimeout.
type Priority int

const (
	// Read is a read a reader waits for: on-demand, counted, and ended
	// at ReadTimeout, so that it also ends when its reader gives up.
	Read Priority = iota
	// Prefetch is on-demand work nobody reads yet (a prefetch a lookup
	// waits for, a speculative fetch): not counted, and an attempt that
	// still moves goes on past ReadTimeout.
	Prefetch
	// Background is work nobody waits for: it waits behind on-demand
	// requests and uses at most the host's background share.
	Background
)

// class is p's class in the host's request limit.
func (p Priority) class() limit.Class {
	if p == Background {
		return limit.Background
	}
	return limit.OnDemand
}

// Span is the blob byte range [Off, End).
type Span struct{ Off, End int64 }

// Len returns the length of s.
func (s Span) Len() int64 { return s.End - s.Off }

// Fill hears that bufs[i][:n] holds its final bytes. It is called from
// the goroutine reading the answer, which it must not hold up, and may
// be called again for the same bytes when a request is retried.
type Fill func(i int, n int64)

// Done calls f if it is set.
func (f Fill) Done(i int, n int64) {
	if f != nil {
		f(i, n)
	}
}

// errNoMultiRange: the registry refused a multi-range request (400, 416),
// answered it with the whole blob or answered it wrongly (a malformed
// multipart answer, parts outside the ranges, bytes missing).
var errNoMultiRange = errors.New("multi-range request refused")

// Reads returns how many Read requests the blob has served or tried.
func (b *Blob) Reads() int64 { return b.reads.Load() }

// ReadAt reads len(p) bytes from off, fewer (with io.EOF) at the end of
// the blob. It is a Read: counted, and it ends within ReadTimeout.
func (b *Blob) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	b.reads.Add(1)
	ctx, cancel := b.policy.bound(ctx, true)
	defer cancel()
	return b.readAt(ctx, Read, p, off)
}

func (b *Blob) readAt(ctx context.Context, pri Priority, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s at %d: negative offset", b.digest, off)
	}
	if off >= b.size {
		return 0, io.EOF
	}
	want := p[:min(int64(len(p)), b.size-off)]
	if len(want) == 0 {
		return 0, nil
	}
	spans := []Span{{off, off + int64(len(want))}}
	if err := b.each(ctx, rangeWhat(spans), func(ctx context.Context, w *watchdog, ep *endpoint) error {
		return b.request(ctx, w, ep, pri, spans, [][]byte{want}, nil)
	}); err != nil {
		return 0, err
	}
	if len(want) < len(p) {
		return len(want), io.EOF
	}
	return len(want), nil
}

// ReadRanges fills bufs[i] (len == spans[i].Len()) with the blob range
// spans[i]. The spans are sorted, disjoint and inside the blob. It sends
// one multi-range request when it may, one request per span otherwise.
// pri says who waits (Priority). fill, if not nil, hears of bytes as
// they arrive.
func (b *Blob) ReadRanges(ctx context.Context, spans []Span, bufs [][]byte, pri Priority, fill Fill) error {
	if pri == Read {
		b.reads.Add(1)
	}
	ctx, cancel := b.policy.bound(ctx, pri == Read)
	defer cancel()
	for _, s := range spans {
		if s.Off < 0 || s.End > b.size || s.End <= s.Off {
			return fmt.Errorf("read %s bytes %d-%d: outside the blob of %d bytes", b.digest, s.Off, s.End-1, b.size)
		}
	}
	whole := func(ctx context.Context, w *watchdog, ep *endpoint) error {
		return b.request(ctx, w, ep, pri, spans, bufs, fill)
	}
	if len(spans) == 1 {
		return b.each(ctx, rangeWhat(spans), whole)
	}
	if !b.single.Load() {
		err := b.each(ctx, rangeWhat(spans), whole)
		if !errors.Is(err, errNoMultiRange) {
			return err
		}
		if !b.single.Swap(true) {
			b.log.InfoContext(ctx, "registry refuses multi-range requests: one range per request", "ref", b.ref.String(), "digest", b.digest.String(), "err", err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	for i, s := range spans {
		g.Go(func() error {
			_, err := b.readAt(gctx, pri, bufs[i], s.Off)
			if err == nil {
				fill.Done(i, s.Len())
			}
			return err
		})
	}
	return g.Wait()
}

// rangeWhat names the ranges of a request in its errors and logs.
func rangeWhat(spans []Span) string {
	if len(spans) == 1 {
		return fmt.Sprintf("bytes %d-%d", spans[0].Off, spans[0].End-1)
	}
	return fmt.Sprintf("%d ranges", len(spans))
}

// each runs one request function through the endpoint loop, starting
// from the endpoint that answered last. errNoMultiRange stops the loop:
// the caller changes its request.
func (b *Blob) each(ctx context.Context, what string, fn requestFunc) error {
	i, err := b.do(ctx, "range request", fmt.Sprintf("read %s %s", b.digest, what), int(b.good.Load()), fn)
	if i >= 0 {
		b.good.Store(int32(i))
	}
	return err
}

// request sends one range request for spans and reads its answer into
// bufs. With more than one span it is a multi-range request.
func (b *Blob) request(ctx context.Context, w *watchdog, ep *endpoint, pri Priority, spans []Span, bufs [][]byte, fill Fill) error {
	if b.lim != nil {
		n, err := b.lim.Acquire(ctx, pri.class(), 1)
		if err != nil {
			return err
		}
		defer b.lim.Release(pri.class(), n)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep.BlobURL(b.digest), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Range", rangeHeader(spans))
	// Ask for the bytes as stored: a transparently decompressed answer
	// would not be the blob.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := exchange(w, ep, req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if len(spans) > 1 {
			return readMulti(resp, spans, bufs, fill)
		}
		if err := checkContentRange(resp.Header.Get("Content-Range"), spans[0].Off, spans[0].End-1); err != nil {
			return err
		}
		if err := readFilling(resp.Body, bufs[0], func(n int64) { fill.Done(0, n) }); err != nil {
			return transient(fmt.Errorf("read body: %w", bodyErr(err)))
		}
		return nil
	case http.StatusOK:
		if !b.warned.Swap(true) {
			b.log.WarnContext(ctx, "registry ignores range requests", "ref", b.ref.String(), "digest", b.digest.String(), "host", ep.Host)
		}
		b.single.Store(true)
		return readWhole(resp.Body, spans, bufs, fill)
	case http.StatusBadRequest, http.StatusRequestedRangeNotSatisfiable:
		if len(spans) > 1 {
			return &attemptError{err: fmt.Errorf("%w: status %s", errNoMultiRange, resp.Status), final: true}
		}
	}
	return statusError(resp)
}

// rangeHeader is the Range header asking for spans.
func rangeHeader(spans []Span) string {
	var hdr strings.Builder
	hdr.WriteString("bytes=")
	for i, s := range spans {
		if i > 0 {
			hdr.WriteByte(',')
		}
		fmt.Fprintf(&hdr, "%d-%d", s.Off, s.End-1)
	}
	return hdr.String()
}

// fillStep is how many bytes a read of an answer waits for between two
// reports to a Fill.
const fillStep = 64 << 10

// readFilling is io.ReadFull that reports the bytes read so far as they
// arrive, every fillStep bytes at most.
func readFilling(body io.Reader, buf []byte, report func(n int64)) error {
	n := 0
	for n < len(buf) {
		k, err := io.ReadFull(body, buf[n:min(n+fillStep, len(buf))])
		n += k
		if err != nil {
			return err
		}
		report(int64(n))
	}
	return nil
}

// readWhole picks the sorted spans out of a whole-blob answer.
func readWhole(body io.Reader, spans []Span, bufs [][]byte, fill Fill) error {
	var pos int64
	for i, s := range spans {
		if _, err := io.CopyN(io.Discard, body, s.Off-pos); err != nil {
			return transient(fmt.Errorf("skip to %d of a full answer: %w", s.Off, bodyErr(err)))
		}
		if _, err := io.ReadFull(body, bufs[i]); err != nil {
			return transient(fmt.Errorf("read body: %w", bodyErr(err)))
		}
		fill.Done(i, s.Len())
		pos = s.End
	}
	return nil
}

// checkContentRange checks that a 206 answer carries exactly the bytes
// asked for: "bytes <first>-<last>/<total or *>".
func checkContentRange(h string, first, last int64) error {
	total, ok := strings.CutPrefix(h, fmt.Sprintf("bytes %d-%d/", first, last))
	if ok && total != "*" {
		_, err := strconv.ParseUint(total, 10, 63)
		ok = err == nil
	}
	if !ok {
		return &attemptError{err: fmt.Errorf("answer Content-Range %q for bytes %d-%d", h, first, last)}
	}
	return nil
}
