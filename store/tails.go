// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"fmt"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"

	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/store/remote"
)

// Early tails. Opening an eStargz layer reads the tail of its blob (the
// footer and, usually, the whole TOC) in one range request. That request
// needs only the blob's digest and size, which the manifest gives, so the
// store sends it for every eStargz layer as soon as it has the manifest,
// while it fetches the image config: the first layer's open then finds
// its tail in hand (one round trip less per cold start), and a
// multi-layer image's later layers find theirs too. A tail nobody opens
// is dropped with the image's resolution; it cost one range request.

// maxEarlyTails bounds the tails one resolution fetches ahead.
const maxEarlyTails = 32

// tailFetch is a tail of a blob fetched ahead of its layer's open.
type tailFetch struct {
	// blob is the reader that fetched it; the layer goes on with it, and
	// with what it learnt of the registry (multi-range, endpoint).
	blob *remote.Blob
	done chan struct{} // closed when data and err are set
	off  int64         // blob offset of data
	data []byte
	err  error
}

// wait returns the tail, or an error if it failed or ctx ended first.
func (t *tailFetch) wait(ctx context.Context) (int64, []byte, error) {
	select {
	case <-t.done:
		return t.off, t.data, t.err
	case <-ctx.Done():
		return 0, nil, ctx.Err()
	}
}

// fetchTails starts the tail fetches of the eStargz layers among infos on
// goroutines the Manager owns, and returns them by blob digest.
func (m *Manager) fetchTails(ref refspec.Reference, infos []types.BlobInfo) map[digest.Digest]*tailFetch {
	tails := map[digest.Digest]*tailFetch{}
	eps, err := m.opts.Registries.Endpoints(m.life, ref)
	if err != nil {
		return tails // the open reports it
	}
	for _, bi := range infos {
		if len(tails) == maxEarlyTails {
			break
		}
		// The DiffID is not known yet; it does not decide the format.
		e := newLayerEntry(ref, bi, digest.FromString("unknown"))
		if e.notLazy != nil || e.desc.Format != FormatEStargz || tails[bi.Digest] != nil {
			continue
		}
		if m.opts.Cache != nil && m.opts.Cache.Has(tocKey(e.desc)) {
			continue // the open reads the TOC from the cache
		}
		blob := remote.NewBlob(ref, e.desc.Digest, e.desc.Size, eps, m.host(ref.Domain()), m.opts.remoteOptions())
		t := &tailFetch{blob: blob, done: make(chan struct{})}
		if !m.goFetchTail(e.desc, t) {
			break
		}
		tails[bi.Digest] = t
	}
	return tails
}

// goFetchTail reads desc's tail window into t on a goroutine the Manager
// owns, bounded by the resolve timeout, unless Close began.
func (m *Manager) goFetchTail(desc LayerDesc, t *tailFetch) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.wg.Go(func() {
		defer close(t.done)
		ctx, cancel := context.WithTimeout(m.life, m.opts.ResolveTimeout)
		defer cancel()
		w := tailWindow(desc.Size)
		t.off, t.data = desc.Size-w, make([]byte, w)
		if w == 0 {
			return
		}
		// Not a read of the layer, and bounded by the resolve timeout.
		spans := []remote.Span{{Off: t.off, End: desc.Size}}
		if err := (registryBlob{t.blob}).readRanges(ctx, spans, [][]byte{t.data}, fetchPrefetch, nil); err != nil {
			t.data, t.err = nil, fmt.Errorf("read the last %d bytes of %s ahead: %w", w, desc.Digest, err)
		}
	})
	return true
}
