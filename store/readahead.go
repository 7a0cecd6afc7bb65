// SPDX-License-Identifier: Apache-2.0

package store

import "sync"

// Read-ahead. A read that fetches a chunk brings along, in the same
// request, what it will likely read next: the other chunks of the chunk's
// gzip member (small-file packing), the rest of the file within
// LayerOptions.ReadAhead compressed bytes and, when the file is read
// sequentially, a growing window of its next chunks: a read fetching the
// chunk right after the last one a read of the same file fetched reads
// ahead minSeqAhead chunks, and twice the previous window after that, up
// to maxSeqAhead.
const (
	minSeqAhead = 2
	maxSeqAhead = 8
)

// readAhead is a layer's read-ahead: its budget and, per file, where
// the last fetch for a read ended.
type readAhead struct {
	budget int64 // LayerOptions.ReadAhead; 0 or less: none

	// mu guards the fields below.
	mu  sync.Mutex
	seq map[uint32]seqState
}

// seqState is where a file's last fetch for a read ended.
type seqState struct {
	next   int // index of the chunk after the last one fetched
	window int // chunks that fetch read ahead
}

// window returns how many chunks beyond r to fetch with it: 0 unless the
// previous fetch for a read of r's file ended just before r, or
// read-ahead is off.
func (a *readAhead) window(r chunkRef) int {
	if a.budget <= 0 {
		return 0
	}
	a.mu.Lock()
	s, ok := a.seq[r.e.ID]
	a.mu.Unlock()
	if !ok || r.i == 0 || s.next != r.i {
		return 0
	}
	return min(max(minSeqAhead, 2*s.window), maxSeqAhead)
}

// plan lists r first, then its member siblings and the chunks of the rest
// of its file within the read-ahead budget, or the next ahead chunks if
// that is more, leaving out those cached. It also returns the index of
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
	budget, count := l.ahead.budget, 0
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

// record notes where the fetch for a read of file id ended.
func (a *readAhead) record(id uint32, s seqState) {
	a.mu.Lock()
	a.seq[id] = s
	a.mu.Unlock()
}
