// SPDX-License-Identifier: Apache-2.0

package store

import (
	"fmt"
	"slices"

	"github.com/stargz-store/stargz-store/store/index"
)

// Index memory. An open layer keeps its index: an entry per file, a
// chunk per piece of content, and the decompressed TOC itself, whose
// strings the entries share. A TOC may be 64 MiB (Options.MaxTOCSize)
// and an image may have a hundred layers, so the Manager bounds the
// indexes of its open layers together (Options.MaxIndexMemory, 512 MiB
// by default). A layer whose index does not fit, even once the idle
// layers (open, but neither used nor read) that would make room are
// freed, is refused as not lazy: storage pulls it. Those idle layers are
// freed least recently looked up first; layers storage uses, or whose
// files were read, are never freed for room.
//
// The size of an index is estimated from its entries, chunks and names
// (indexBytes): within 15 % of the heap that eStargz and zstd:chunked
// indexes of 4000 files were measured to keep (TestIndexBytesEstimate).

const (
	// defaultIndexMemory is Options.MaxIndexMemory's default.
	defaultIndexMemory = 512 << 20
	// indexEntryBytes and indexChunkBytes are the heap an index keeps per entry and
	// per chunk besides names: the structures, and the TOC's JSON for
	// them (digests, numbers, keys).
	indexEntryBytes = 380
	indexChunkBytes = 350
)

// indexBytes estimates the heap ix keeps.
func indexBytes(ix *index.Index) int64 {
	var n int64
	for _, e := range ix.Entries() {
		// Names twice: the TOC's copy and the directory's.
		n += indexEntryBytes + int64(len(e.Chunks))*indexChunkBytes + 2*int64(len(e.Name)) + int64(len(e.LinkName))
		for k, v := range e.Xattrs {
			n += 2*int64(len(k)) + 2*int64(len(v))
		}
	}
	return n
}

// admit reserves the index memory of l, which Close gives back (see
// unadmit), freeing idle layers to make room. It returns an error
// wrapping ErrNotLazy when l does not fit.
func (m *Manager) admit(l *Layer) error {
	n := l.indexSize
	m.mu.Lock()
	freed, ok := m.roomLocked(n)
	used := m.indexUsed
	if ok {
		m.indexes[l] = n
		m.indexUsed += n
	}
	m.mu.Unlock()
	for _, st := range freed {
		m.free(st, "room for another index")
	}
	if !ok {
		return fmt.Errorf("%w: its index takes about %d bytes, and the open layers' %d of the %d allowed",
			ErrNotLazy, n, used, m.opts.MaxIndexMemory)
	}
	return nil
}

// unadmit gives back the index memory of l, if it holds any.
func (m *Manager) unadmit(l *Layer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.indexUsed -= m.indexes[l]
	delete(m.indexes, l)
}

// roomLocked makes room for an index of n bytes: it removes idle layers,
// least recently looked up first, until n fits, and returns them to be
// closed. It removes none and reports false if n cannot fit. m.mu must be
// held.
func (m *Manager) roomLocked(n int64) (freed []*layerState, ok bool) {
	limit := m.opts.MaxIndexMemory
	if m.indexUsed+n <= limit {
		return nil, true
	}
	var idle []*layerState
	var idleBytes int64
	for k, st := range m.layers {
		if k.d == st.names[0] && st.kind == stateReady && st.total() == 0 && !st.readSince() {
			idle = append(idle, st)
			idleBytes += m.indexes[st.layer]
		}
	}
	if m.indexUsed-idleBytes+n > limit {
		return nil, false
	}
	slices.SortFunc(idle, func(a, b *layerState) int { return a.lastUsed.Compare(b.lastUsed) })
	for _, st := range idle {
		if m.indexUsed+n <= limit {
			break
		}
		m.removeLocked(st)
		m.indexUsed -= m.indexes[st.layer]
		delete(m.indexes, st.layer)
		freed = append(freed, st)
	}
	return freed, true
}
