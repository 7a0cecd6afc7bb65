// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stargz-store/stargz-store/store/remote"
)

// The store's side of the registry client (package store/remote): which
// host's request limit and outage memo a blob uses, how a fetch's kind
// maps to a request priority, and how remote's error classes become the
// store's.

// remoteOptions are the registry client's options from the Manager's.
func (o Options) remoteOptions() remote.Options {
	return remote.Options{FetchTimeout: o.FetchTimeout, ReadTimeout: o.ReadTimeout, Retries: o.Retries,
		Backoff: o.backoff, MaxBackoff: o.maxBackoff, SingleRange: o.SingleRange, Logger: o.Logger}
}

// host returns what the blobs read from a registry host share: the
// bound on their requests in flight and the outage memo.
func (m *Manager) host(name string) *remote.Host {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.hosts[name]
	if h == nil {
		h = remote.NewHost(m.opts.MaxParallelRequests)
		m.hosts[name] = h
	}
	return h
}

// registryBlob is a layer's blob in a registry: a BlobReader, and a
// rangeReader that reads a fetch's spans in one request.
type registryBlob struct{ *remote.Blob }

var _ rangeReader = registryBlob{}

func (b registryBlob) readRanges(ctx context.Context, spans []remote.Span, bufs [][]byte, kind fetchKind, fill remote.Fill) error {
	return b.ReadRanges(ctx, spans, bufs, kind.priority(), fill)
}

// priority is the request priority of a fetch of kind k: a file read is
// a Read (counted as a read of the layer, ended at ReadTimeout), the
// prefetch and speculative fetches are on-demand Prefetch work, the
// background fetch waits behind both.
func (k fetchKind) priority() remote.Priority {
	switch k {
	case fetchRead:
		return remote.Read
	case fetchPrefetch:
		return remote.Prefetch
	}
	return remote.Background
}

// registryError maps remote's error classes to the store's for what
// resolving an image reads (manifests, configs, TOC blobs): a 404 is
// ErrNotFound, a blob that does not match its digest ErrVerify. The
// message stays err's. Range reads keep remote's classes: a blob that
// goes missing under an open layer is an I/O error, not a missing layer.
func registryError(err error) error {
	switch {
	case errors.Is(err, remote.ErrNotFound):
		return classed{err, ErrNotFound}
	case errors.Is(err, remote.ErrVerify):
		return classed{err, ErrVerify}
	}
	return err
}

// classed is err, of the store's class class too.
type classed struct{ err, class error }

func (e classed) Error() string   { return e.err.Error() }
func (e classed) Unwrap() []error { return []error{e.err, e.class} }

// readWait is the wait of one file read for the fetches it starts or
// joins, bounded by LayerOptions.ReadTimeout: whatever they are, the
// reader waits no longer, and the deadline's cause says so. The deadline
// is set at the read's first chunk that is not in memory or the cache, so
// that a read served from them, the common case, sets no timer.
type readWait struct {
	ctx    context.Context
	limit  time.Duration
	cancel context.CancelFunc // set once the deadline is
}

// bounded returns the read's context with its deadline, setting it on
// the first call.
func (w *readWait) bounded() context.Context {
	if w.cancel == nil {
		w.ctx, w.cancel = remote.WithReadTimeout(w.ctx, w.limit)
	}
	return w.ctx
}

// end releases the deadline's timer, if one was set.
func (w *readWait) end() {
	if w.cancel != nil {
		w.cancel()
	}
}

// boundError is err, or the cause of ctx's end if that is what err
// reports (a bare context.DeadlineExceeded says nothing of the bound).
func boundError(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && cause != ctx.Err() && errors.Is(err, ctx.Err()) && !errors.Is(err, cause) {
		return fmt.Errorf("%w: %w", cause, err)
	}
	return err
}
