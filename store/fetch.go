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

// rangeReader reads several blob ranges at once (registryBlob does it
// with one multi-range request). BlobReaders without it are read range by
// range.
type rangeReader interface {
	readRanges(ctx context.Context, spans []span, bufs [][]byte, kind fetchKind, fill fillFunc) error
}

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
	data, err := l.cache.ReadAll(chunkCacheKey(c), c.Size)
	if err != nil {
		return nil, false
	}
	return data, true
}

// readCached reads the part of chunk c that p wants from file offset off
// straight from the cache, without reading the rest of the chunk. It
// reports false when the chunk is not cached (or there is no cache).
func (l *Layer) readCached(c index.Chunk, p []byte, off int64) (int, bool) {
	if l.cache == nil || c.Zero {
		return 0, false
	}
	want := p[:min(int64(len(p)), c.End()-off)]
	n, err := l.cache.ReadAt(chunkCacheKey(c), want, off-c.Offset)
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
	return l.cache.Contains(chunkCacheKey(c))
}

// keep stores verified chunks: with a cache, on disk and, unless they
// come from the background fetch, in the memory LRU at once. Background
// fetches write them before returning (which also paces them); reads and
// the prefetch leave the writes (and their fsyncs) to a goroutine of the
// layer, which holds mem, the memory of the piece the chunks came in,
// until they are written. Files whose last missing chunk this stores are
// then queued for whole-file assembly.
func (l *Layer) keep(refs []chunkRef, data [][]byte, kind fetchKind, mem *grant) {
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
	put := func() bool {
		for i, r := range refs {
			dg := r.chunk().Digest
			if err := l.cache.Put(l.ctx, chunkCacheKey(r.chunk()), data[i]); err != nil {
				if l.ctx.Err() != nil {
					return false
				}
				l.log.Debug("cache chunk", "digest", dg.String(), "err", err)
			}
		}
		return true
	}
	if bg {
		if put() {
			l.assembleCompleted(refs)
		}
		return
	}
	mem.hold()
	l.mu.Lock()
	started := l.goLocked(func() {
		ok := put()
		mem.done()
		if ok {
			l.assembleCompleted(refs)
		}
	})
	l.mu.Unlock()
	if !started {
		mem.done()
	}
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
	got, err := l.fetchRefs(ctx, mine, done, fetchRead, 0, first)
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

// fetchRefs fetches the compressed ranges of refs, which the caller
// claimed with done, in pieces (fetchmem.go) of one request each (several
// ranges in a multi-range request), decodes and verifies every chunk and
// keeps them. It returns the data of refs[0]; a chunk other than refs[0]
// that fails is logged and left out. first, if not nil, gets refs[0]'s
// verified data as soon as it has arrived, before the rest.
func (l *Layer) fetchRefs(ctx context.Context, refs []chunkRef, done chan struct{}, kind fetchKind, gap int64, first func([]byte)) ([]byte, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	if gap == 0 {
		gap = mergeGap
	}
	pieces := planPieces(refs, gap, l.mem.pieces)
	claims := l.splitClaim(pieces, done)
	var lead []byte
	var st fetchStats
	for i, p := range pieces {
		f := first
		if i > 0 {
			f = nil
		}
		data, err := l.fetchPiece(ctx, p, kind, f, i == 0, &st)
		if claims != nil {
			l.unclaim(p.refs, claims[i])
		}
		if err != nil {
			for j := i + 1; claims != nil && j < len(pieces); j++ {
				l.unclaim(pieces[j].refs, claims[j])
			}
			return nil, err
		}
		if i == 0 {
			lead = data
			if first != nil && len(pieces) > 1 {
				first(data) // the reader need not wait for the other pieces
			}
		}
	}
	l.log.Debug("chunks fetched", "digest", l.desc.Digest.String(), "path", refs[0].e.Name,
		"off", refs[0].chunk().Offset, "chunks", len(refs), "pieces", len(pieces), "ranges", st.ranges, "bytes", st.bytes)
	return lead, nil
}

// fetchStats counts what a fetch read.
type fetchStats struct {
	ranges int
	bytes  int64 // compressed bytes of the chunks kept
}

// splitClaim gives each piece of a fetch of several its own claim, so
// that a reader waiting for a chunk wakes when the chunk's piece ends,
// not when the whole fetch does. It returns a channel per piece, to end
// each piece's claim with unclaim, or nil for a fetch of one piece (done
// stands).
func (l *Layer) splitClaim(pieces []piece, done chan struct{}) []chan struct{} {
	if len(pieces) < 2 || done == nil {
		return nil
	}
	chans := make([]chan struct{}, len(pieces))
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, p := range pieces {
		chans[i] = make(chan struct{})
		for _, r := range p.refs {
			if l.pending[r.key()] == done {
				l.pending[r.key()] = chans[i]
			}
		}
	}
	return chans
}

// fetchPiece fetches one piece: it takes the piece's memory from the
// budget before allocating, reads the piece's ranges, decodes and
// verifies every chunk and keeps them. When lead is set (the piece holds
// the fetch's first chunk, p.refs[0]) it returns that chunk's data, or
// its error; another chunk that fails is logged and left out. first, if
// not nil, gets the lead chunk's data as soon as it is verified.
func (l *Layer) fetchPiece(ctx context.Context, p piece, kind fetchKind, first func([]byte), lead bool, st *fetchStats) ([]byte, error) {
	c0 := p.refs[0].chunk()
	mem, err := l.mem.take(ctx, kind, p.weight(kind))
	if err != nil {
		return nil, fmt.Errorf("fetch chunk %d of %s: %w", c0.Offset, p.refs[0].e.Name, err)
	}
	defer mem.done()
	bufs := make([][]byte, len(p.spans))
	for i, s := range p.spans {
		bufs[i] = make([]byte, s.len())
	}
	dec := newDecoding(l, p.refs, p.spans, bufs, kind, first, mem)
	if err := l.readSpans(ctx, p.spans, bufs, kind, dec.fill); err != nil {
		dec.wg.Wait() // what was verified on the way is kept
		return nil, fmt.Errorf("fetch chunk %d of %s: %w", c0.Offset, p.refs[0].e.Name, err)
	}
	st.ranges += len(p.spans)
	return l.settle(p, dec, kind, lead, st)
}

// settle ends a piece once its answer is complete: it decodes what was
// not decoded on the way, keeps the verified chunks not kept yet and
// looks for ELF heads among them. With lead it returns p.refs[0]'s data
// or error; other chunks that fail are logged and left out.
func (l *Layer) settle(p piece, dec *decoding, kind fetchKind, lead bool, st *fetchStats) ([]byte, error) {
	datas, errs := dec.finish()
	var leadData []byte
	var kept, keep []chunkRef
	var keptData, keepData [][]byte
	for i, r := range p.refs {
		c := r.chunk()
		if err := errs[i]; err != nil {
			err = fmt.Errorf("chunk %d of %s: %w", c.Offset, r.e.Name, err)
			if i == 0 && lead {
				return nil, err
			}
			l.log.Warn("chunk failed verification", "digest", l.desc.Digest.String(), "err", err)
			continue
		}
		if i == 0 && lead {
			leadData = datas[i]
		}
		kept, keptData = append(kept, r), append(keptData, datas[i])
		if !dec.kept[i] { // not kept on the way
			keep, keepData = append(keep, r), append(keepData, datas[i])
		}
		st.bytes += c.CompressedEnd - c.CompressedOffset
	}
	l.keep(keep, keepData, kind, dec.mem)
	if kind != fetchBackground {
		l.speculateELF(kept, keptData)
	}
	return leadData, nil
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
