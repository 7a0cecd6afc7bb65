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
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
)

// remoteBlob reads ranges of one blob from a registry with HTTP range
// requests. It tries the endpoints in order (mirrors first, the primary
// last), starting from the one that answered last. Safe for concurrent use.
type remoteBlob struct {
	ref     refspec.Reference
	digest  digest.Digest
	size    int64
	eps     []blobEndpoint
	timeout time.Duration // per request, body included
	retries int
	backoff time.Duration
	log     *slog.Logger

	good   atomic.Int32 // index of the endpoint that answered last
	reads  atomic.Int64 // ReadAt calls, to tell a layer whose files are read
	warned atomic.Bool  // a 200 for a range request was logged
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

// ReadAt reads len(p) bytes from off, fewer (with io.EOF) at the end of
// the blob.
func (b *remoteBlob) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	b.reads.Add(1)
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
	if len(b.eps) == 0 {
		return 0, fmt.Errorf("read %s: no registry endpoint", b.digest)
	}
	start := int(b.good.Load())
	var errs []error
	for i := range b.eps {
		j := (start + i) % len(b.eps)
		err := b.readFrom(ctx, b.eps[j], want, off)
		if err == nil {
			b.good.Store(int32(j))
			if len(want) < len(p) {
				return len(want), io.EOF
			}
			return len(want), nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", b.eps[j].host, err))
		if len(b.eps) > 1 {
			b.log.DebugContext(ctx, "endpoint failed", "ref", b.ref.String(), "digest", b.digest.String(), "host", b.eps[j].host, "err", err)
		}
	}
	return 0, fmt.Errorf("read %s bytes %d-%d: %w", b.digest, off, off+int64(len(want))-1, errors.Join(errs...))
}

// readFrom fills p from one endpoint, retrying transient failures with
// exponential backoff.
func (b *remoteBlob) readFrom(ctx context.Context, ep blobEndpoint, p []byte, off int64) error {
	delay := b.backoff
	for attempt := 0; ; attempt++ {
		err := b.request(ctx, ep, p, off)
		var re *rangeError
		if err == nil || ctx.Err() != nil || attempt >= b.retries || !errors.As(err, &re) || !re.retry {
			return err
		}
		b.log.DebugContext(ctx, "retry range request", "ref", b.ref.String(), "digest", b.digest.String(), "off", off, "attempt", attempt+1, "err", err)
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

// request sends one range request and reads its answer into p.
func (b *remoteBlob) request(ctx context.Context, ep blobEndpoint, p []byte, off int64) error {
	rctx, cancel := context.WithTimeout(ctx, b.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, ep.url, nil)
	if err != nil {
		return err
	}
	end := off + int64(len(p)) - 1
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, end))
	// Ask for the bytes as stored: a transparently decompressed answer
	// would not be the blob.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := ep.client.Do(req)
	if err != nil {
		return &rangeError{err: err, retry: !errors.Is(err, registryauth.ErrUnauthorized)}
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if err := checkContentRange(resp.Header.Get("Content-Range"), off, end); err != nil {
			return err
		}
	case http.StatusOK:
		if !b.warned.Swap(true) {
			b.log.WarnContext(ctx, "registry ignores range requests", "ref", b.ref.String(), "digest", b.digest.String(), "host", ep.host)
		}
		if _, err := io.CopyN(io.Discard, resp.Body, off); err != nil {
			return &rangeError{err: fmt.Errorf("skip to %d of a full answer: %w", off, bodyErr(err)), retry: true}
		}
	default:
		return statusError(resp)
	}
	if _, err := io.ReadFull(resp.Body, p); err != nil {
		return &rangeError{err: fmt.Errorf("read body: %w", bodyErr(err)), retry: true}
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
