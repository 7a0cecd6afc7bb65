// SPDX-License-Identifier: Apache-2.0

package store

import (
	"errors"
	"io"
	"sync"

	"github.com/stargz-store/stargz-store/store/index"
)

// Where a layer keeps its verified chunks: in the cache, by chunk digest,
// written by a goroutine of the layer (or, for the background fetch,
// before its fetch goes on), and meanwhile held in memory, so that from
// the moment a fetch keeps a chunk every reader finds it, whether or not
// the cache's memory LRU takes it. Without a cache the layer holds its
// chunks in memory while it lives.

// heldChunks are the verified chunks a layer holds in memory: without a
// cache all of them, with one those whose cache write is still running.
// The zero value is not usable: m must be a map.
type heldChunks struct {
	// mu guards the fields below.
	mu sync.RWMutex
	m  map[chunkKey][]byte
}

func (h *heldChunks) get(k chunkKey) ([]byte, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	data, ok := h.m[k]
	return data, ok
}

func (h *heldChunks) put(refs []chunkRef, data [][]byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, r := range refs {
		h.m[r.key()] = data[i]
	}
}

func (h *heldChunks) drop(refs []chunkRef) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range refs {
		delete(h.m, r.key())
	}
}

func (h *heldChunks) clear() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.m)
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

// lookup returns chunk r if the layer holds it or it is cached.
func (l *Layer) lookup(r chunkRef) ([]byte, bool) {
	if data, ok := l.held.get(r.key()); ok || l.cache == nil {
		return data, ok
	}
	c := r.chunk()
	data, err := l.cache.ReadAll(chunkCacheKey(c), c.Size)
	if err != nil {
		return nil, false
	}
	return data, true
}

// has reports whether chunk r is cached (without a cache: held), without
// reading it.
func (l *Layer) has(r chunkRef) bool {
	c := r.chunk()
	if c.Zero {
		return true
	}
	if l.cache == nil {
		_, ok := l.held.get(r.key())
		return ok
	}
	return l.cache.Contains(chunkCacheKey(c))
}

// keep stores verified chunks: with a cache, on disk and, unless they
// come from the background fetch, in the memory LRU at once. Background
// fetches write them before returning (which also paces them); reads and
// the prefetch leave the writes (and their fsyncs) to a goroutine of the
// layer, which holds mem, the memory of the piece the chunks came in,
// until they are written, and the chunks until then. Files whose last
// missing chunk this stores are then queued for whole-file assembly.
func (l *Layer) keep(refs []chunkRef, data [][]byte, kind fetchKind, mem *grant) {
	if l.cache == nil {
		l.held.put(refs, data)
		return
	}
	if kind == fetchBackground {
		if l.put(refs, data) {
			l.assembleCompleted(refs)
		}
		return
	}
	for i, r := range refs {
		l.cache.Remember(r.chunk().Digest, data[i])
	}
	l.held.put(refs, data)
	mem.hold()
	started := l.spawn(func() {
		ok := l.put(refs, data)
		l.held.drop(refs)
		mem.done()
		if ok {
			l.assembleCompleted(refs)
		}
	})
	if !started {
		l.held.drop(refs)
		mem.done()
	}
}

// put writes chunks to the cache; it reports false when the layer closed
// meanwhile.
func (l *Layer) put(refs []chunkRef, data [][]byte) bool {
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
