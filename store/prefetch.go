// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/cachedir"
)

// fetchOptions say what a layer fetches on its own once opened.
type fetchOptions struct {
	prefetch   bool    // the prioritized files, [0, PrefetchEnd)
	background bool    // then every other chunk
	share      float64 // of the time background fetch may keep a request running
	batch      int64   // compressed bytes per background request
	// delay is how long the layer must have gone without a read fetching
	// before each background request; 0 means none.
	delay time.Duration
	// startup are the paths fetched at once when the layer has no
	// prioritized files, command the places of the image's default
	// command (see speculate.go).
	startup, command []string
}

// defaultBackgroundBatch is how many compressed bytes one background
// request fetches.
const defaultBackgroundBatch = 4 << 20

// maxBatchRanges bounds the ranges of one background request: registries
// and CDNs refuse Range headers with too many.
const maxBatchRanges = 32

// prefetchState is the state of the fetching a layer starts on its own
// (startFetching): when it ends, and the chunks its prefetch pinned.
type prefetchState struct {
	// prefetched is closed when the prefetch has ended (or was not run),
	// fetched when the background fetch has too.
	prefetched, fetched chan struct{}
	limit               *pinBudget // cache bytes prefetches may pin

	// mu guards the fields below.
	mu     sync.Mutex
	pins   []digest.Digest // cache entries pinned for the layer's life
	pinned int64           // their bytes, taken from limit
}

// startFetching starts the layer's prefetch and then its background fetch
// on a goroutine the layer owns, and returns a channel closed when the
// prefetch has ended. Call it once.
func (l *Layer) startFetching(o fetchOptions) <-chan struct{} {
	if l.PrefetchEnd() <= 0 {
		l.speculateStartup(o.startup, o.command)
	}
	started := l.spawn(func() {
		defer close(l.pre.fetched)
		if o.prefetch {
			if err := l.prefetch(l.ctx); err != nil && l.ctx.Err() == nil {
				l.log.Warn("prefetch failed", "digest", l.desc.Digest.String(), "err", err)
			}
		}
		close(l.pre.prefetched)
		l.fetches.readFetched()
		if o.background && l.cache != nil {
			if err := l.background(l.ctx, o); err != nil && l.ctx.Err() == nil {
				l.log.Warn("background fetch stopped", "digest", l.desc.Digest.String(), "err", err)
			}
		}
	})
	if !started {
		close(l.pre.prefetched)
		close(l.pre.fetched)
	}
	return l.pre.prefetched
}

// prefetchRefs returns the chunks inside [0, PrefetchEnd).
func (l *Layer) prefetchRefs() []chunkRef {
	end := l.PrefetchEnd()
	var refs []chunkRef
	for _, e := range l.Index().Entries() {
		for i, c := range e.Chunks {
			if !c.Zero && c.CompressedEnd <= end {
				refs = append(refs, chunkRef{e, i})
			}
		}
	}
	return refs
}

// prefetch fetches the blob range of the prioritized files, [0,
// PrefetchEnd), then decodes and caches its chunks. The range is read in
// pieces (fetchmem.go): one range request unless it is larger than a
// piece. Its first chunks stay pinned in the cache while the layer is
// open, up to the pin budget (pinBudget). Chunks already cached are not
// fetched again.
func (l *Layer) prefetch(ctx context.Context) error {
	if l.PrefetchEnd() <= 0 {
		return nil
	}
	start := time.Now()
	refs := l.prefetchRefs()
	l.pin(refs)
	refs = slices.DeleteFunc(refs, l.has)
	if len(refs) == 0 {
		return nil
	}
	c := l.fetches.claim(refs)
	// The prioritized files are contiguous at the start of the blob, so
	// merge across any gap, unless a read is fetching some of them: then
	// leave its bytes out.
	gap := l.PrefetchEnd()
	if len(c.refs) < len(refs) {
		gap = mergeGap
	}
	if _, err := l.fetchRefs(ctx, c, fetchPrefetch, gap, nil); err != nil {
		return err
	}
	l.log.Info("layer prefetched", "digest", l.desc.Digest.String(), "chunks", len(refs), "bytes", l.PrefetchEnd(), "dur", time.Since(start))
	return nil
}

// pin pins the prefetched chunks refs, in blob order, in the cache for
// the layer's life, as long as the pin budget lasts: the rest are
// prefetched all the same, but may be evicted.
func (l *Layer) pin(refs []chunkRef) {
	if l.cache == nil {
		return
	}
	p := &l.pre
	p.mu.Lock()
	n := 0
	for _, r := range refs {
		c := r.chunk()
		if !p.limit.take(c.Size) {
			break
		}
		l.cache.Pin(c.Digest)
		p.pins = append(p.pins, c.Digest)
		p.pinned += c.Size
		n++
	}
	pinned := p.pinned
	p.mu.Unlock()
	if n < len(refs) {
		l.log.Info("prefetch pins only part of its chunks", "digest", l.desc.Digest.String(),
			"chunks", n, "of", len(refs), "bytes", pinned, "limit", p.limit.max)
	}
}

// unpinAll unpins what the prefetch pinned: the layer closes.
func (l *Layer) unpinAll() {
	p := &l.pre
	p.mu.Lock()
	pins, pinned := p.pins, p.pinned
	p.pins, p.pinned = nil, 0
	p.mu.Unlock()
	for _, dg := range pins {
		l.cache.Unpin(dg)
	}
	p.limit.give(pinned)
}

// pinBudget bounds the cache bytes prefetches keep pinned, across the
// layers sharing it: half of the cache, so that however far an image's
// prefetch landmark lies, eviction always has room to work with. The
// zero value allows nothing; a nil *pinBudget allows anything.
type pinBudget struct {
	max  int64
	left atomic.Int64
}

// newPinBudget returns the pin budget for cache: half its size.
func newPinBudget(cache *cachedir.Dir) *pinBudget {
	if cache == nil {
		return nil
	}
	_, size := cache.Usage()
	b := &pinBudget{max: size / 2}
	b.left.Store(b.max)
	return b
}

// take takes n bytes from the budget, if it has them.
func (b *pinBudget) take(n int64) bool {
	if b == nil {
		return true
	}
	for {
		left := b.left.Load()
		if left < n {
			return false
		}
		if b.left.CompareAndSwap(left, left-n) {
			return true
		}
	}
}

// give returns n bytes to the budget.
func (b *pinBudget) give(n int64) {
	if b != nil {
		b.left.Add(n)
	}
}

// waitQuiet waits until no file read of the layer has fetched from the
// registry for d and none is fetching: the background fetch then stays
// out of a container's start-up.
func (l *Layer) waitQuiet(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	for {
		wait := l.fetches.quietIn(d)
		if wait <= 0 {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// background fetches every chunk not cached yet, in blob order, a batch
// per request at background priority, pausing between requests so that it
// keeps a request running only o.share of the time, and before each
// request until file reads have not fetched for o.delay.
func (l *Layer) background(ctx context.Context, o fetchOptions) error {
	if o.batch <= 0 {
		o.batch = defaultBackgroundBatch
	}
	var all []chunkRef
	for _, e := range l.Index().Entries() {
		for i, c := range e.Chunks {
			if !c.Zero {
				all = append(all, chunkRef{e, i})
			}
		}
	}
	slices.SortFunc(all, func(a, b chunkRef) int {
		return int(min(max(a.chunk().CompressedOffset-b.chunk().CompressedOffset, -1), 1))
	})
	start := time.Now()
	var fetched, bytes int64
	for i := 0; i < len(all); {
		var batch []chunkRef
		var size, end int64
		holes := 0
		for ; i < len(all) && size < o.batch && holes < maxBatchRanges; i++ {
			if l.has(all[i]) {
				continue
			}
			c := all[i].chunk()
			if len(batch) > 0 && c.CompressedOffset > end+mergeGap {
				holes++
			}
			batch = append(batch, all[i])
			size += c.CompressedEnd - c.CompressedOffset
			end = max(end, c.CompressedEnd)
		}
		if len(batch) == 0 {
			break
		}
		if err := l.waitQuiet(ctx, o.delay); err != nil {
			return err
		}
		// Chunks a read or the prefetch is fetching are theirs.
		c := l.fetches.claim(batch)
		if len(c.refs) == 0 {
			l.fetches.release(c)
			continue
		}
		t0 := time.Now()
		if _, err := l.fetchRefs(ctx, c, fetchBackground, 0, nil); err != nil {
			return err
		}
		fetched += int64(len(c.refs))
		for _, r := range c.refs {
			bytes += r.chunk().CompressedEnd - r.chunk().CompressedOffset
		}
		if o.share > 0 && o.share < 1 {
			pause := time.Duration(float64(time.Since(t0)) * (1 - o.share) / o.share)
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
	}
	l.log.Info("layer fetched in the background", "digest", l.desc.Digest.String(), "chunks", fetched, "bytes", bytes, "dur", time.Since(start))
	return nil
}
