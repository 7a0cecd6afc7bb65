// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
)

// remoteBlob reads ranges of one blob from a registry with HTTP range
// requests. It tries the endpoints in order (mirrors first, the primary
// last), starting from the one that answered last. Several ranges go in
// one multi-range request until the registry refuses one; from then on
// the blob is read one range per request. Safe for concurrent use.
type remoteBlob struct {
	ref     refspec.Reference
	digest  digest.Digest
	size    int64
	eps     []blobEndpoint
	timeout time.Duration // per request, body included
	retries int
	backoff time.Duration
	log     *slog.Logger
	lim     *limiter // requests in flight to the registry; nil: no bound

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
		ref:     ref,
		digest:  desc.Digest,
		size:    desc.Size,
		timeout: o.RequestTimeout,
		retries: o.Retries,
		backoff: o.backoff,
		log:     o.Logger,
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

// rangeError is a failed range request. retry says whether the same
// request may succeed when repeated.
type rangeError struct {
	err   error
	retry bool
}

func (e *rangeError) Error() string { return e.err.Error() }
func (e *rangeError) Unwrap() error { return e.err }

// errNoMultiRange: the registry refused a multi-range request (400, 416)
// or answered it with the whole blob.
var errNoMultiRange = errors.New("multi-range request refused")

// span is the blob byte range [off, end).
type span struct{ off, end int64 }

func (s span) len() int64 { return s.end - s.off }

// ReadAt reads len(p) bytes from off, fewer (with io.EOF) at the end of
// the blob. It counts as an on-demand read.
func (b *remoteBlob) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	b.reads.Add(1)
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
	err := b.each(ctx, fmt.Sprintf("bytes %d-%d", off, off+int64(len(want))-1), func(ep blobEndpoint) error {
		return b.request(ctx, ep, []span{{off, off + int64(len(want))}}, [][]byte{want}, nil)
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
// a read of the layer. fill, if not nil, hears of bytes as they arrive.
func (b *remoteBlob) readRanges(ctx context.Context, spans []span, bufs [][]byte, kind fetchKind, fill fillFunc) error {
	if kind == fetchRead {
		b.reads.Add(1)
	}
	ctx = withBackground(ctx, kind == fetchBackground)
	for _, s := range spans {
		if s.off < 0 || s.end > b.size || s.end <= s.off {
			return fmt.Errorf("read %s bytes %d-%d: outside the blob of %d bytes", b.digest, s.off, s.end-1, b.size)
		}
	}
	if len(spans) == 1 {
		return b.each(ctx, fmt.Sprintf("bytes %d-%d", spans[0].off, spans[0].end-1), func(ep blobEndpoint) error {
			return b.request(ctx, ep, spans, bufs, fill)
		})
	}
	if !b.single.Load() {
		err := b.each(ctx, fmt.Sprintf("%d ranges", len(spans)), func(ep blobEndpoint) error {
			return b.request(ctx, ep, spans, bufs, fill)
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

// each runs one request function against the endpoints in turn until one
// succeeds. errNoMultiRange stops the search: the caller changes request.
func (b *remoteBlob) each(ctx context.Context, what string, fn func(ep blobEndpoint) error) error {
	if len(b.eps) == 0 {
		return fmt.Errorf("read %s: no registry endpoint", b.digest)
	}
	start := int(b.good.Load())
	var errs []error
	for i := range b.eps {
		j := (start + i) % len(b.eps)
		err := b.retry(ctx, func() error { return fn(b.eps[j]) })
		if err == nil {
			b.good.Store(int32(j))
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, errNoMultiRange) {
			return err
		}
		errs = append(errs, fmt.Errorf("%s: %w", b.eps[j].host, err))
		if len(b.eps) > 1 {
			b.log.DebugContext(ctx, "endpoint failed", "ref", b.ref.String(), "digest", b.digest.String(), "host", b.eps[j].host, "err", err)
		}
	}
	return fmt.Errorf("read %s %s: %w", b.digest, what, errors.Join(errs...))
}

// retry runs fn, retrying transient failures with exponential backoff.
func (b *remoteBlob) retry(ctx context.Context, fn func() error) error {
	delay := b.backoff
	for attempt := 0; ; attempt++ {
		err := fn()
		var re *rangeError
		if err == nil || ctx.Err() != nil || attempt >= b.retries || !errors.As(err, &re) || !re.retry {
			return err
		}
		b.log.DebugContext(ctx, "retry range request", "ref", b.ref.String(), "digest", b.digest.String(), "attempt", attempt+1, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, maxBackoff)
	}
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
func (b *remoteBlob) request(ctx context.Context, ep blobEndpoint, spans []span, bufs [][]byte, fill fillFunc) error {
	if b.lim != nil {
		release, err := b.lim.acquire(ctx, isBackground(ctx))
		if err != nil {
			return err
		}
		defer release()
	}
	rctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, ep.url, nil)
	if err != nil {
		return err
	}
	var hdr strings.Builder
	hdr.WriteString("bytes=")
	for i, s := range spans {
		if i > 0 {
			hdr.WriteByte(',')
		}
		fmt.Fprintf(&hdr, "%d-%d", s.off, s.end-1)
	}
	req.Header.Set("Range", hdr.String())
	// Ask for the bytes as stored: a transparently decompressed answer
	// would not be the blob.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := ep.client.Do(req)
	if err != nil {
		return &rangeError{err: err, retry: !errors.Is(err, registryauth.ErrUnauthorized)}
	}
	defer resp.Body.Close()
	multi := len(spans) > 1
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if mt, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); multi && mt == "multipart/byteranges" {
			return readParts(multipart.NewReader(resp.Body, params["boundary"]), spans, bufs, fill)
		}
		if multi {
			// One range for several: the registry merged them, or it
			// served the first only (then it does not do multi-range).
			err := readParts(singlePart{resp}, spans, bufs, fill)
			var re *rangeError
			if errors.As(err, &re) && !re.retry {
				return &rangeError{err: fmt.Errorf("%w: %w", errNoMultiRange, err)}
			}
			return err
		}
		if err := checkContentRange(resp.Header.Get("Content-Range"), spans[0].off, spans[0].end-1); err != nil {
			return err
		}
		if err := readFilling(resp.Body, bufs[0], func(n int64) { fill.done(0, n) }); err != nil {
			return &rangeError{err: fmt.Errorf("read body: %w", bodyErr(err)), retry: true}
		}
		return nil
	case http.StatusOK:
		if !b.warned.Swap(true) {
			b.log.WarnContext(ctx, "registry ignores range requests", "ref", b.ref.String(), "digest", b.digest.String(), "host", ep.host)
		}
		b.single.Store(true)
		return readWhole(resp.Body, spans, bufs, fill)
	case http.StatusBadRequest, http.StatusRequestedRangeNotSatisfiable:
		if multi {
			return &rangeError{err: fmt.Errorf("%w: status %s", errNoMultiRange, resp.Status)}
		}
	}
	return statusError(resp)
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
			return &rangeError{err: fmt.Errorf("skip to %d of a full answer: %w", s.off, bodyErr(err)), retry: true}
		}
		if _, err := io.ReadFull(body, bufs[i]); err != nil {
			return &rangeError{err: fmt.Errorf("read body: %w", bodyErr(err)), retry: true}
		}
		fill.done(i, s.len())
		pos = s.end
	}
	return nil
}

// partReader yields the parts of a multi-range answer.
type partReader interface {
	NextPart() (*multipart.Part, error)
}

// singlePart is a 206 answer to a multi-range request with one range,
// which the registry made by merging ours; its Content-Range is in the
// response header.
type singlePart struct{ resp *http.Response }

func (s singlePart) NextPart() (*multipart.Part, error) { return nil, io.EOF }

// readParts copies each part into the spans it overlaps, trusting only the
// part's own Content-Range (registries may reorder or merge ranges), and
// checks that every span was covered.
func readParts(pr partReader, spans []span, bufs [][]byte, report fillFunc) error {
	covered := make([]int64, len(spans))
	fill := func(h string, body io.Reader) error {
		first, last, err := parseContentRange(h)
		if err != nil {
			return &rangeError{err: err}
		}
		if first < spans[0].off || last >= spans[len(spans)-1].end {
			return &rangeError{err: fmt.Errorf("part Content-Range %q outside the ranges asked for", h)}
		}
		data := make([]byte, last-first+1)
		if _, err := io.ReadFull(body, data); err != nil {
			return &rangeError{err: fmt.Errorf("read part: %w", bodyErr(err)), retry: true}
		}
		for i, s := range spans {
			lo, hi := max(s.off, first), min(s.end, last+1)
			if lo < hi {
				copy(bufs[i][lo-s.off:], data[lo-first:hi-first])
				if covered[i] += hi - lo; covered[i] == s.len() {
					report.done(i, s.len())
				}
			}
		}
		return nil
	}
	if sp, ok := pr.(singlePart); ok {
		if err := fill(sp.resp.Header.Get("Content-Range"), sp.resp.Body); err != nil {
			return err
		}
	} else {
		for {
			p, err := pr.NextPart()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return &rangeError{err: fmt.Errorf("read multipart answer: %w", err), retry: true}
			}
			if err := fill(p.Header.Get("Content-Range"), p); err != nil {
				return err
			}
		}
	}
	for i, s := range spans {
		if covered[i] < s.len() {
			return &rangeError{err: fmt.Errorf("multi-range answer lacks bytes %d-%d", s.off, s.end-1)}
		}
	}
	return nil
}

// parseContentRange parses "bytes <first>-<last>/<total or *>".
func parseContentRange(h string) (first, last int64, err error) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	r, total, ok2 := strings.Cut(rest, "/")
	a, z, ok3 := strings.Cut(r, "-")
	if ok && ok2 && ok3 {
		first, err1 := strconv.ParseInt(a, 10, 64)
		last, err2 := strconv.ParseInt(z, 10, 64)
		_, err3 := strconv.ParseUint(total, 10, 63)
		if err1 == nil && err2 == nil && (err3 == nil || total == "*") && first >= 0 && last >= first {
			return first, last, nil
		}
	}
	return 0, 0, fmt.Errorf("bad Content-Range %q", h)
}

// bodyErr turns a short body's io.EOF into io.ErrUnexpectedEOF.
func bodyErr(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func statusError(resp *http.Response) error {
	err := fmt.Errorf("status %s", resp.Status)
	switch code := resp.StatusCode; {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return &rangeError{err: fmt.Errorf("%w: %w", err, registryauth.ErrUnauthorized)}
	case code == http.StatusRequestedRangeNotSatisfiable:
		return &rangeError{err: fmt.Errorf("%w: range not satisfiable", err)}
	case code >= 500, code == http.StatusTooManyRequests, code == http.StatusRequestTimeout:
		return &rangeError{err: err, retry: true}
	default:
		return &rangeError{err: err}
	}
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
		return &rangeError{err: fmt.Errorf("answer Content-Range %q for bytes %d-%d", h, first, last)}
	}
	return nil
}
