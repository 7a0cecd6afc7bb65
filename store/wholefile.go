// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/cachedir"
	"github.com/stargz-store/stargz-store/store/index"
)

// A regular file of more than one chunk is served from the cache chunk by
// chunk. Once all its chunks are cached, the layer assembles its content
// into one more cache entry, its whole-file entry, so that FUSE
// passthrough can hand the kernel a single backing file (CachedFile). The
// entry is written in the background, one file at a time across the
// Manager's layers, and verified at commit against the file's digest in
// the TOC. It is an ordinary cache entry: counted in the size cap,
// evicted like the others. The chunks it was made from are demoted to the
// cold end of the LRU, so that under pressure the cache drops them first
// rather than keep the bytes twice.
//
// The entry is a cache record (wholeKey) that says that digest and the
// file's size, so every read of it has the cache check the entry against
// them once per process, as it checks chunks against theirs: an entry
// damaged on disk is removed and the file read from its chunks. A file
// whose TOC gives no file digest gets no whole-file entry: nothing would
// say what the entry must hash to after a restart.

// minWholeSize is the smallest file that gets a whole-file entry. Below
// one FUSE read (1 MiB) passthrough measured no faster than the daemon.
const minWholeSize = 1 << 20

// maxAssemblies bounds the whole files being assembled at once across the
// layers of a Manager: assembly is disk-bound background work.
const maxAssemblies = 1

// wholeMagic starts the name of a whole-file entry; the version is in it.
const wholeMagic = "stargz-store whole file v1\n"

// wholeKey is the key of e's whole-file entry: a cache record named by
// the file's content, its size and its digest, whose bytes must hash to
// e.Digest and be e.Size long. The content of a file is the same whatever
// the layer's format, so the entry is shared by every layer holding that
// file. Records and chunks are filed apart, so no chunk can meet the
// name.
func wholeKey(e *index.Entry) cachedir.Key {
	name := digest.FromString(wholeMagic + strconv.FormatInt(e.Size, 10) + "\n" + e.Digest.String())
	return cachedir.Record(name, e.Digest).Sized(e.Size)
}

// wholeState is where a file of the layer stands with its whole-file
// entry; absent means nothing was tried.
type wholeState uint8

const (
	wholeQueued wholeState = iota + 1 // waiting or being assembled
	wholeFailed                       // refused: not tried again while the layer lives
)

// wholeFiles is a layer's whole-file assembly: each file's state, the
// files waiting, whether a goroutine assembles them.
type wholeFiles struct {
	off   bool          // LayerOptions.NoWholeFiles
	slots chan struct{} // a slot per assembly running, shared by a Manager's layers

	// mu guards the fields below.
	mu    sync.Mutex
	state map[uint32]wholeState
	queue []*index.Entry
	busy  bool
}

// errChunkGone: a chunk was evicted while its file was being assembled;
// the file is queued again when that chunk is cached again.
var errChunkGone = errors.New("chunk left the cache")

// wantsWhole reports whether e gets a whole-file entry.
func (l *Layer) wantsWhole(e *index.Entry) bool {
	return l.cache != nil && !l.whole.off && e.Type == index.TypeReg && len(e.Chunks) > 1 && e.Size >= minWholeSize &&
		e.Digest.Validate() == nil
}

// readWhole reads p from e's whole-file entry at off, when it has one:
// the chunks it was made from may have been evicted.
func (l *Layer) readWhole(e *index.Entry, p []byte, off int64) (int, bool) {
	if !l.wantsWhole(e) || off >= e.Size {
		return 0, false
	}
	want := p[:min(int64(len(p)), e.Size-off)]
	n, err := l.cache.ReadAt(wholeKey(e), want, off)
	if n != len(want) || (err != nil && !errors.Is(err, io.EOF)) {
		return 0, false
	}
	return n, true
}

// CachedFile opens the cache file that holds exactly the content of the
// regular file e, when there is one: e is a single chunk that is on disk,
// or e has a whole-file entry. The caller closes the file. FUSE
// passthrough can hand it to the kernel, which then reads it without the
// daemon. The cache checks the file against the chunk's or the file's
// digest before its first use in the process (hashing it once: about
// 0.65 ms per MiB), and a file whose size is not e.Size is never returned.
// When every chunk of e is cached but its whole-file entry is not (say,
// it was found damaged), CachedFile queues the assembly and returns
// false: it never waits for it.
func (l *Layer) CachedFile(e *index.Entry) (*os.File, bool) {
	if l.cache == nil || e.Type != index.TypeReg {
		return nil, false
	}
	if len(e.Chunks) == 1 {
		c := e.Chunks[0]
		if c.Zero || c.Offset != 0 || c.Size != e.Size {
			return nil, false
		}
		f, err := l.cache.Get(chunkCacheKey(c))
		return f, err == nil
	}
	if !l.wantsWhole(e) {
		return nil, false
	}
	if f, err := l.cache.Get(wholeKey(e)); err == nil {
		return f, true
	}
	l.assembleIfComplete(e)
	return nil, false
}

// assembleCompleted queues the assembly of the files of refs whose chunks
// are now all cached: refs were just stored.
func (l *Layer) assembleCompleted(refs []chunkRef) {
	seen := map[uint32]bool{}
	for _, r := range refs {
		if !seen[r.e.ID] {
			seen[r.e.ID] = true
			l.assembleIfComplete(r.e)
		}
	}
}

// assembleIfComplete queues the assembly of e if it wants a whole-file
// entry, has none, and all its chunks are cached.
func (l *Layer) assembleIfComplete(e *index.Entry) {
	if !l.wantsWhole(e) {
		return
	}
	w := &l.whole
	w.mu.Lock()
	_, tried := w.state[e.ID]
	w.mu.Unlock()
	if tried || l.cache.Has(wholeKey(e)) {
		return
	}
	for i := range e.Chunks {
		if !l.has(chunkRef{e, i}) {
			return
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.state[e.ID]; ok {
		return
	}
	w.state[e.ID] = wholeQueued
	w.queue = append(w.queue, e)
	if !w.busy {
		w.busy = l.spawn(l.assembleQueued)
	}
}

// assembleQueued assembles the queued files one by one until the queue is
// empty or the layer closes. It runs on a goroutine of the layer, at most
// one per layer.
func (l *Layer) assembleQueued() {
	w := &l.whole
	for {
		w.mu.Lock()
		if len(w.queue) == 0 || l.ctx.Err() != nil {
			w.busy = false
			w.mu.Unlock()
			return
		}
		e := w.queue[0]
		w.queue = w.queue[1:]
		w.mu.Unlock()
		err := l.assembleOne(l.ctx, e)
		w.mu.Lock()
		if err == nil || errors.Is(err, errChunkGone) {
			delete(w.state, e.ID)
		} else {
			w.state[e.ID] = wholeFailed
		}
		w.mu.Unlock()
	}
}

// assembleOne assembles e once a slot among the Manager's assemblies is
// free, and logs the outcome.
func (l *Layer) assembleOne(ctx context.Context, e *index.Entry) error {
	select {
	case l.whole.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.whole.slots }()
	start := time.Now()
	err := l.assemble(ctx, e)
	switch {
	case err == nil:
		l.log.Debug("file assembled", "digest", l.desc.Digest.String(), "path", e.Name, "bytes", e.Size, "dur", time.Since(start))
	case errors.Is(err, cachedir.ErrCorrupt):
		l.log.Warn("file assembly refused", "digest", l.desc.Digest.String(), "path", e.Name, "err", err)
	case ctx.Err() == nil:
		l.log.Debug("file assembly failed", "digest", l.desc.Digest.String(), "path", e.Name, "err", err)
	}
	return err
}

// assembleBuf is the size of the copy buffer of an assembly.
const assembleBuf = 1 << 20

// assemble writes e's whole-file entry from its cached chunks and commits
// it if the content hashes to e.Digest. The cache checks each chunk as it
// is read, once per process: a damaged chunk is removed there and the
// assembly stops (errChunkGone), to be queued again when a read or the
// background fetch has cached the chunk anew. An entry already there is
// fine.
func (l *Layer) assemble(ctx context.Context, e *index.Entry) error {
	if err := e.Digest.Validate(); err != nil {
		return fmt.Errorf("assemble %s: no file digest: %w", e.Name, err)
	}
	w, err := l.cache.Writer(ctx, wholeKey(e))
	if errors.Is(err, cachedir.ErrExists) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("assemble %s: %w", e.Name, err)
	}
	defer w.Abort()
	buf := make([]byte, assembleBuf)
	for _, c := range e.Chunks {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := l.copyChunk(w, c, buf); err != nil {
			return fmt.Errorf("assemble %s: chunk at %d: %w", e.Name, c.Offset, err)
		}
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("assemble %s: %w", e.Name, err)
	}
	for _, c := range e.Chunks {
		if !c.Zero {
			l.cache.Demote(c.Digest)
		}
	}
	return nil
}

// copyChunk writes chunk c from the cache (zeros for a hole) to w.
func (l *Layer) copyChunk(w io.Writer, c index.Chunk, buf []byte) error {
	if c.Zero {
		clear(buf)
	}
	for off := int64(0); off < c.Size; {
		p := buf[:min(int64(len(buf)), c.Size-off)]
		if !c.Zero {
			n, err := l.cache.ReadAt(chunkCacheKey(c), p, off)
			if errors.Is(err, cachedir.ErrNotFound) { // evicted, or found damaged and removed
				return errChunkGone
			}
			if n < len(p) {
				if err == nil || errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		if _, err := w.Write(p); err != nil {
			return err
		}
		off += int64(len(p))
	}
	return nil
}
