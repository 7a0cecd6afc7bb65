// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/stargz-store/stargz-store/store/index"
)

// fetchKind says who asked for a fetch: a file read (on-demand priority,
// counts as a read of the layer), the prefetch a lookup waits for
// (on-demand priority, not a read) or the background fetch.
type fetchKind int

const (
	fetchRead fetchKind = iota
	fetchPrefetch
	fetchBackground
)

// rangeReader reads several blob ranges at once (remoteBlob does it with
// one multi-range request). BlobReaders without it are read range by
// range.
type rangeReader interface {
	readRanges(ctx context.Context, spans []span, bufs [][]byte, kind fetchKind, fill fillFunc) error
}

var _ rangeReader = (*remoteBlob)(nil)

// mergeGap is the largest hole between two compressed ranges that is
// fetched rather than split into two ranges.
const mergeGap = 16 << 10

// lookup returns the chunk if it is cached.
func (l *Layer) lookup(key chunkKey, c index.Chunk) ([]byte, bool) {
	if l.cache == nil {
		l.mu.RLock()
		data, ok := l.chunks[key]
		l.mu.RUnlock()
		return data, ok
	}
	data, err := l.cache.ReadAll(c.Digest)
	if err != nil || int64(len(data)) != c.Size {
		return nil, false
	}
	return data, true
}

// readCached reads the part of chunk c that p wants from file offset off
// straight from the cache, without reading the rest of the chunk. It
// reports false when the chunk is not cached (or there is no cache), or
// when the entry under its digest is not c.Size bytes: only a named entry
// (whole file, TOC ranges) whose name a chunk's content hashes to could be
// (wholefile.go).
func (l *Layer) readCached(c index.Chunk, p []byte, off int64) (int, bool) {
	if l.cache == nil || c.Zero {
		return 0, false
	}
	if size, ok := l.cache.Size(c.Digest); ok && size != c.Size {
		return 0, false
	}
	want := p[:min(int64(len(p)), c.End()-off)]
	n, err := l.cache.ReadAt(c.Digest, want, off-c.Offset)
	if n != len(want) || (err != nil && !errors.Is(err, io.EOF)) {
		return 0, false
	}
	return n, true
}

// has reports whether the chunk is cached, without reading it.
func (l *Layer) has(r chunkRef) bool {
	c := r.chunk()
	if c.Zero {
		return true
	}
	if l.cache == nil {
		l.mu.RLock()
		_, ok := l.chunks[r.key()]
		l.mu.RUnlock()
		return ok
	}
	return l.cache.Contains(c.Digest)
}

// keep stores verified chunks: with a cache, on disk and, unless they
// come from the background fetch, in the memory LRU at once. Background
// fetches write them before returning (which also paces them); reads and
// the prefetch leave the writes (and their fsyncs) to a goroutine of the
// layer. Files whose last missing chunk this stores are then queued for
// whole-file assembly.
func (l *Layer) keep(refs []chunkRef, data [][]byte, kind fetchKind) {
	if l.cache == nil {
		l.mu.Lock()
		for i, r := range refs {
			l.chunks[r.key()] = data[i]
		}
		l.mu.Unlock()
		return
	}
	bg := kind == fetchBackground
	if !bg {
		for i, r := range refs {
			l.cache.Remember(r.chunk().Digest, data[i])
		}
	}
	write := func() {
		for i, r := range refs {
			dg := r.chunk().Digest
			if err := l.cache.PutCold(l.ctx, dg, data[i]); err != nil {
				if l.ctx.Err() != nil {
					return
				}
				l.log.Debug("cache chunk", "digest", dg.String(), "err", err)
			}
		}
		l.assembleCompleted(refs)
	}
	if bg {
		write()
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.goLocked(write)
}

// fetchWith fetches chunk r together with the chunks worth fetching in
// the same request: the other chunks of its gzip member and, up to
// ReadAhead compressed bytes, the rest of its file. It returns r's data.
// When another fetch has r in flight it waits for that fetch instead.
func (l *Layer) fetchWith(ctx context.Context, r chunkRef) ([]byte, error) {
	key := r.key()
	ahead := l.sequential(r)
	for {
		if data, ok := l.lookup(key, r.chunk()); ok { // stored just before our call began
			return data, nil
		}
		refs, next := l.plan(r, ahead)
		refs = append(refs, l.siblings(r, refs)...)
		mine, done, busy := l.claim(refs, true)
		if busy != nil {
			select {
			case <-busy:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		l.mu.Lock()
		l.seq[r.e.ID] = seqState{next: next, window: ahead}
		l.mu.Unlock()
		l.reading.Add(1)
		if len(mine) > 1 {
			return l.fetchEarly(ctx, mine, done)
		}
		return l.readFetch(ctx, mine, done, nil)
	}
}

// readFetch is the fetch of a read: it runs fetchRefs on claimed chunks,
// then records the read, ends the reading count the caller began and
// releases the claims.
func (l *Layer) readFetch(ctx context.Context, mine []chunkRef, done chan struct{}, first func([]byte)) ([]byte, error) {
	got, err := l.fetchRefs(ctx, mine, fetchRead, 0, first)
	l.readFetched()
	l.reading.Add(-1)
	l.unclaim(mine, done)
	return got, err
}

// fetchEarly runs a read's fetch of several chunks on a goroutine of the
// layer and returns the first chunk's data as soon as that chunk has
// arrived and been verified: the reader need not wait for the read-ahead
// behind it (a cold exec of a 7 MB program waited for both its 4 MiB
// chunks). The claims on the chunks are released, and the reading count
// the caller began is ended, when the whole fetch ends.
func (l *Layer) fetchEarly(ctx context.Context, mine []chunkRef, done chan struct{}) ([]byte, error) {
	type result struct {
		data []byte
		err  error
	}
	res := make(chan result, 1)
	var once sync.Once
	deliver := func(data []byte, err error) { once.Do(func() { res <- result{data, err} }) }
	l.mu.Lock()
	started := l.goLocked(func() {
		deliver(l.readFetch(l.ctx, mine, done, func(data []byte) { deliver(data, nil) }))
	})
	l.mu.Unlock()
	if !started {
		l.reading.Add(-1)
		l.unclaim(mine, done)
		return nil, fmt.Errorf("layer %s is closing: %w", l.desc.Digest, context.Canceled)
	}
	select {
	case r := <-res:
		return r.data, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// claim marks the chunks of refs that no other fetch has in flight as
// this fetch's: readers of them wait for it, and other fetches leave them
// out. It returns those chunks (in refs' order) and the channel to pass to
// unclaim. With first set, refs[0] is required: if another fetch has it,
// claim takes nothing and returns that fetch's channel as busy.
func (l *Layer) claim(refs []chunkRef, first bool) (mine []chunkRef, done, busy chan struct{}) {
	done = make(chan struct{})
	l.mu.Lock()
	defer l.mu.Unlock()
	if first && len(refs) > 0 {
		if ch, ok := l.pending[refs[0].key()]; ok {
			return nil, nil, ch
		}
	}
	for _, x := range refs {
		if _, ok := l.pending[x.key()]; ok {
			continue
		}
		l.pending[x.key()] = done
		mine = append(mine, x)
	}
	return mine, done, nil
}

// unclaim ends a claim: the chunks are stored (or the fetch failed) and
// their readers look again.
func (l *Layer) unclaim(mine []chunkRef, done chan struct{}) {
	l.mu.Lock()
	for _, x := range mine {
		if l.pending[x.key()] == done {
			delete(l.pending, x.key())
		}
	}
	l.mu.Unlock()
	close(done)
}

// seqState is where a file's last fetch for a read ended.
type seqState struct {
	next   int // index of the chunk after the last one fetched
	window int // chunks that fetch read ahead
}

// Sequential read-ahead (on when ReadAhead is): a read fetching the chunk right after the last
// one a read of the same file fetched reads ahead minSeqAhead chunks, and
// twice the previous window after that, up to maxSeqAhead.
const (
	minSeqAhead = 2
	maxSeqAhead = 8
)

// sequential returns how many chunks beyond r to fetch with it: 0 unless
// the previous fetch for a read of r's file ended just before r, or
// read-ahead is off.
func (l *Layer) sequential(r chunkRef) int {
	if l.readAhead <= 0 {
		return 0
	}
	l.mu.RLock()
	s, ok := l.seq[r.e.ID]
	l.mu.RUnlock()
	if !ok || r.i == 0 || s.next != r.i {
		return 0
	}
	return min(max(minSeqAhead, 2*s.window), maxSeqAhead)
}

// plan lists r first, then its member siblings and the chunks of the rest
// of its file within ReadAhead compressed bytes, or the next ahead chunks
// if that is more, leaving out those cached. It also returns the index of
// the chunk of r's file after the last one it considered.
func (l *Layer) plan(r chunkRef, ahead int) ([]chunkRef, int) {
	refs := []chunkRef{r}
	seen := map[chunkKey]bool{r.key(): true}
	add := func(x chunkRef) {
		if !seen[x.key()] && !l.has(x) {
			seen[x.key()] = true
			refs = append(refs, x)
		}
	}
	c := r.chunk()
	for _, x := range l.members[c.CompressedOffset] {
		add(x)
	}
	budget, count := l.readAhead, 0
	next := r.i + 1
	for i := r.i + 1; i < len(r.e.Chunks); i++ {
		n := r.e.Chunks[i]
		if n.Zero {
			next = i + 1
			continue
		}
		size := n.CompressedEnd - n.CompressedOffset
		if size > budget && count >= ahead {
			break
		}
		budget -= size
		count++
		next = i + 1
		add(chunkRef{r.e, i})
		for _, x := range l.members[n.CompressedOffset] {
			add(x)
		}
	}
	return refs, next
}

// spansOf returns the sorted, merged compressed ranges that hold refs.
func spansOf(refs []chunkRef, gap int64) []span {
	var spans []span
	for _, r := range refs {
		c := r.chunk()
		spans = append(spans, span{c.CompressedOffset, c.CompressedEnd})
	}
	slices.SortFunc(spans, func(a, b span) int { return int(min(max(a.off-b.off, -1), 1)) })
	out := spans[:0]
	for _, s := range spans {
		if n := len(out); n > 0 && s.off <= out[n-1].end+gap {
			out[n-1].end = max(out[n-1].end, s.end)
			continue
		}
		out = append(out, s)
	}
	return out
}

// fetchRefs fetches the compressed ranges of refs in one request (several
// ranges in a multi-range request), decodes and verifies every chunk and
// keeps them. It returns the data of refs[0]; a chunk other than refs[0]
// that fails is logged and left out. first, if not nil, gets refs[0]'s
// verified data as soon as it has arrived, before the rest.
func (l *Layer) fetchRefs(ctx context.Context, refs []chunkRef, kind fetchKind, gap int64, first func([]byte)) ([]byte, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	if gap == 0 {
		gap = mergeGap
	}
	spans := spansOf(refs, gap)
	bufs := make([][]byte, len(spans))
	for i, s := range spans {
		bufs[i] = make([]byte, s.len())
	}
	dec := newDecoding(l, refs, spans, bufs, kind, first)
	if err := l.readSpans(ctx, spans, bufs, kind, dec.fill); err != nil {
		dec.wg.Wait() // what was verified on the way is kept
		c := refs[0].chunk()
		return nil, fmt.Errorf("fetch chunk %d of %s: %w", c.Offset, refs[0].e.Name, err)
	}
	datas, errs := dec.finish()
	var firstData []byte
	var total int64
	var kept, keep []chunkRef
	var keptData, keepData [][]byte
	for i, r := range refs {
		c := r.chunk()
		if err := errs[i]; err != nil {
			err = fmt.Errorf("chunk %d of %s: %w", c.Offset, r.e.Name, err)
			if i == 0 {
				return nil, err
			}
			l.log.Warn("chunk failed verification", "digest", l.desc.Digest.String(), "err", err)
			continue
		}
		if i == 0 {
			firstData = datas[i]
		}
		kept, keptData = append(kept, r), append(keptData, datas[i])
		if !dec.kept[i] { // not kept on the way
			keep, keepData = append(keep, r), append(keepData, datas[i])
		}
		total += c.CompressedEnd - c.CompressedOffset
	}
	l.keep(keep, keepData, kind)
	if kind != fetchBackground {
		l.speculateELF(kept, keptData)
	}
	l.log.Debug("chunks fetched", "digest", l.desc.Digest.String(), "path", refs[0].e.Name,
		"off", refs[0].chunk().Offset, "chunks", len(refs), "ranges", len(spans), "bytes", total)
	return firstData, nil
}

// spanOf returns the index of the span holding blob offset off.
func spanOf(spans []span, off int64) int {
	j, _ := slices.BinarySearchFunc(spans, off, func(s span, off int64) int {
		switch {
		case s.end <= off:
			return -1
		case s.off > off:
			return 1
		}
		return 0
	})
	return j
}

// readSpans reads the spans through the blob, in one request when it can.
func (l *Layer) readSpans(ctx context.Context, spans []span, bufs [][]byte, kind fetchKind, fill fillFunc) error {
	if rr, ok := l.blob.(rangeReader); ok {
		return rr.readRanges(ctx, spans, bufs, kind, fill)
	}
	for i, s := range spans {
		n, err := l.blob.ReadAt(ctx, bufs[i], s.off)
		if err != nil && !(errors.Is(err, io.EOF) && n == len(bufs[i])) {
			return err
		}
		fill.done(i, s.len())
	}
	return nil
}
