// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
)

// remoteBlob reads ranges of one blob from a registry with HTTP range
// requests, through the endpoint loop of attempt.go (mirrors first, the
// primary last, starting from the one that answered last). Several ranges
// go in one multi-range request until the registry refuses one or answers
// one wrongly; from then on the blob is read one range per request. Safe
// for concurrent use.
type remoteBlob struct {
	ref    refspec.Reference
	digest digest.Digest
	size   int64
	eps    []blobEndpoint
	policy retryPolicy
	log    *slog.Logger
	lim    *limiter // requests in flight to the registry; nil: no bound
	out    *outage  // the host's outages; nil: none noted

	good   atomic.Int32 // index of the endpoint that answered last
	reads  atomic.Int64 // on-demand reads, to tell a layer whose files are read
	warned atomic.Bool  // a 200 for a range request was logged
	single atomic.Bool  // multi-range requests are off or were refused
}

type blobEndpoint struct {
	host   string
	url    string
	client *http.Client
}

func newRemoteBlob(ref refspec.Reference, desc LayerDesc, eps []registryauth.Endpoint, o Options) *remoteBlob {
	b := &remoteBlob{
		ref:    ref,
		digest: desc.Digest,
		size:   desc.Size,
		policy: newRetryPolicy(o),
		log:    o.Logger,
	}
	b.single.Store(o.SingleRange)
	for _, ep := range eps {
		b.eps = append(b.eps, blobEndpoint{
			host:   ep.Host,
			url:    ep.BlobURL(desc.Digest),
			client: &http.Client{Transport: ep.Transport},
		})
	}
	return b
}

// errNoMultiRange: the registry refused a multi-range request (400, 416),
// answered it with the whole blob or answered it wrongly (a malformed
// multipart answer, parts outside the ranges, bytes missing).
var errNoMultiRange = errors.New("multi-range request refused")

// span is the blob byte range [off, end).
type span struct{ off, end int64 }

func (s span) len() int64 { return s.end - s.off }

// ReadAt reads len(p) bytes from off, fewer (with io.EOF) at the end of
// the blob. It counts as an on-demand read, and ends within ReadTimeout.
func (b *remoteBlob) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	b.reads.Add(1)
	ctx, cancel := b.policy.bound(ctx, true)
	defer cancel()
	return b.readAt(ctx, p, off)
}

func (b *remoteBlob) readAt(ctx context.Context, p []byte, off int64) (int, error) {
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
	err := b.each(ctx, fmt.Sprintf("bytes %d-%d", off, off+int64(len(want))-1), func(ctx context.Context, w *watchdog, ep blobEndpoint) error {
		return b.request(ctx, w, ep, []span{{off, off + int64(len(want))}}, [][]byte{want}, nil)
	})
	if err != nil {
		return 0, err
	}
	if len(want) < len(p) {
		return len(want), io.EOF
	}
	return len(want), nil
}

// readRanges fills bufs[i] (len == spans[i].len()) with the blob range
// spans[i]. The spans are sorted, disjoint and inside the blob. It sends
// one multi-range request when it may, one request per span otherwise.
// Background reads wait behind on-demand ones; only fetchRead counts as
// a read of the layer, and only it ends at ReadTimeout (attempt.go).
// fill, if not nil, hears of bytes as they arrive.
func (b *remoteBlob) readRanges(ctx context.Context, spans []span, bufs [][]byte, kind fetchKind, fill fillFunc) error {
	if kind == fetchRead {
		b.reads.Add(1)
	}
	ctx = withBackground(ctx, kind == fetchBackground)
	ctx, cancel := b.policy.bound(ctx, kind == fetchRead)
	defer cancel()
	for _, s := range spans {
		if s.off < 0 || s.end > b.size || s.end <= s.off {
			return fmt.Errorf("read %s bytes %d-%d: outside the blob of %d bytes", b.digest, s.off, s.end-1, b.size)
		}
	}
	if len(spans) == 1 {
		return b.each(ctx, fmt.Sprintf("bytes %d-%d", spans[0].off, spans[0].end-1), func(ctx context.Context, w *watchdog, ep blobEndpoint) error {
			return b.request(ctx, w, ep, spans, bufs, fill)
		})
	}
	if !b.single.Load() {
		err := b.each(ctx, fmt.Sprintf("%d ranges", len(spans)), func(ctx context.Context, w *watchdog, ep blobEndpoint) error {
			return b.request(ctx, w, ep, spans, bufs, fill)
		})
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
			_, err := b.readAt(gctx, bufs[i], s.off)
			if err == nil {
				fill.done(i, s.len())
			}
			return err
		})
	}
	return g.Wait()
}

// each runs one request function through the endpoint loop (attempt.go)
// until an endpoint serves it. errNoMultiRange stops the loop: the caller
// changes its request.
func (b *remoteBlob) each(ctx context.Context, what string, fn func(ctx context.Context, w *watchdog, ep blobEndpoint) error) error {
	if len(b.eps) == 0 {
		return fmt.Errorf("read %s: no registry endpoint", b.digest)
	}
	note := func(i int, err error) {
		b.log.DebugContext(ctx, "range request failed", "ref", b.ref.String(), "digest", b.digest.String(),
			"host", b.eps[i].host, "what", what, "err", err)
	}
	p := b.policy
	if b.out.down() {
		p = p.probe()
	}
	i, errs, cerr := p.try(ctx, len(b.eps), int(b.good.Load()), note, func(ctx context.Context, w *watchdog, i int) error {
		return fn(ctx, w, b.eps[i])
	})
	if i >= 0 {
		b.good.Store(int32(i))
		if b.out.noteUp() {
			b.log.InfoContext(ctx, "registry answers again", "ref", b.ref.String())
		}
		return nil
	}
	err := cerr
	if err == nil {
		var all []error
		for j, err := range errs {
			if err != nil {
				all = append(all, fmt.Errorf("%s: %w", b.eps[j].host, err))
			}
		}
		err = errors.Join(all...)
	}
	err = fmt.Errorf("read %s %s: %w", b.digest, what, err)
	if unreachable(errs, cerr) && b.out.noteDown() {
		b.log.WarnContext(ctx, "registry unreachable: reads make one short attempt until it answers",
			"ref", b.ref.String(), "probe_timeout", p.probe().idle, "err", err)
	}
	return err
}

// fillFunc hears that bufs[i][:n] holds its final bytes. It is called
// from the goroutine reading the answer, which it must not hold up, and
// may be called again for the same bytes when a request is retried.
type fillFunc func(i int, n int64)

// done calls f if it is set.
func (f fillFunc) done(i int, n int64) {
	if f != nil {
		f(i, n)
	}
}

// request sends one range request for spans and reads its answer into
// bufs. With more than one span it is a multi-range request.
func (b *remoteBlob) request(ctx context.Context, w *watchdog, ep blobEndpoint, spans []span, bufs [][]byte, fill fillFunc) error {
	if b.lim != nil {
		release, err := b.lim.acquire(ctx, isBackground(ctx))
		if err != nil {
			return err
		}
		defer release()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Range", rangeHeader(spans))
	// Ask for the bytes as stored: a transparently decompressed answer
	// would not be the blob.
	req.Header.Set("Accept-Encoding", "identity")
	w.start()
	resp, err := ep.client.Do(req)
	if err != nil {
		return &attemptError{err: err, retry: !errors.Is(err, registryauth.ErrUnauthorized)}
	}
	w.progress()
	resp.Body = w.body(resp.Body)
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if len(spans) > 1 {
			return readMulti(resp, spans, bufs, fill)
		}
		if err := checkContentRange(resp.Header.Get("Content-Range"), spans[0].off, spans[0].end-1); err != nil {
			return err
		}
		if err := readFilling(resp.Body, bufs[0], func(n int64) { fill.done(0, n) }); err != nil {
			return transient(fmt.Errorf("read body: %w", bodyErr(err)))
		}
		return nil
	case http.StatusOK:
		if !b.warned.Swap(true) {
			b.log.WarnContext(ctx, "registry ignores range requests", "ref", b.ref.String(), "digest", b.digest.String(), "host", ep.host)
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
func rangeHeader(spans []span) string {
	var hdr strings.Builder
	hdr.WriteString("bytes=")
	for i, s := range spans {
		if i > 0 {
			hdr.WriteByte(',')
		}
		fmt.Fprintf(&hdr, "%d-%d", s.off, s.end-1)
	}
	return hdr.String()
}

// fillStep is how many bytes a read of an answer waits for between two
// reports to a fillFunc.
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
func readWhole(body io.Reader, spans []span, bufs [][]byte, fill fillFunc) error {
	var pos int64
	for i, s := range spans {
		if _, err := io.CopyN(io.Discard, body, s.off-pos); err != nil {
			return transient(fmt.Errorf("skip to %d of a full answer: %w", s.off, bodyErr(err)))
		}
		if _, err := io.ReadFull(body, bufs[i]); err != nil {
			return transient(fmt.Errorf("read body: %w", bodyErr(err)))
		}
		fill.done(i, s.len())
		pos = s.end
	}
	return nil
}

// bodyErr turns a short body's io.EOF into io.ErrUnexpectedEOF.
func bodyErr(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// statusError classifies a registry's error answer: 5xx, 429 and 408 are
// transient, 401/403 wrap registryauth.ErrUnauthorized.
func statusError(resp *http.Response) error {
	err := fmt.Errorf("status %s", resp.Status)
	switch code := resp.StatusCode; {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return &attemptError{err: fmt.Errorf("%w: %w", err, registryauth.ErrUnauthorized)}
	case code == http.StatusRequestedRangeNotSatisfiable:
		return &attemptError{err: fmt.Errorf("%w: range not satisfiable", err)}
	case retryable(code):
		return transient(err)
	default:
		return &attemptError{err: err}
	}
}

// retryable reports whether an answer with this status may be followed by
// a good one when the request is repeated.
func retryable(code int) bool {
	return code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout
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

// onHost makes b's requests count against the host's limit and its
// failures against the host's outage record.
func (b *remoteBlob) onHost(h *registryHost) {
	b.lim, b.out = h.requests, &h.outage
}
