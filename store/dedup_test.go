// SPDX-License-Identifier: Apache-2.0

package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/stargz-store/stargz-store/cachedir"
	"github.com/stargz-store/stargz-store/internal/testutil"
)

// gateBlob serves a blob from memory and counts, per blob byte, how many
// reads fetched it. While gate is not nil, reads wait for it to close
// (a registry that holds the requests).
type gateBlob struct {
	b []byte

	// mu guards the fields below.
	mu    sync.Mutex
	gate  chan struct{}
	times []int // per byte of b: fetches of it
	reads int
}

func (g *gateBlob) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	g.mu.Lock()
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	n, err := bytes.NewReader(g.b).ReadAt(p, off)
	g.mu.Lock()
	g.reads++
	for i := range n {
		g.times[off+int64(i)]++
	}
	g.mu.Unlock()
	return n, err
}

// reset forgets the counts and arms a new gate, returned.
func (g *gateBlob) reset() chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.times = make([]int, len(g.b))
	g.reads = 0
	g.gate = make(chan struct{})
	return g.gate
}

// readCount returns how many reads reached the blob since reset.
func (g *gateBlob) readCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.reads
}

// fetched returns the bytes fetched since reset and how many of them more
// than once.
func (g *gateBlob) fetched() (total, twice int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, n := range g.times {
		total += n
		if n > 1 {
			twice += n - 1
		}
	}
	return total, twice
}

// openGated opens an eStargz layer of files (8 KiB chunks) over a gateBlob
// with a cache, the gate open.
func openGated(t *testing.T, files []testutil.File, readAhead int64) (*Layer, *gateBlob) {
	t.Helper()
	l, blob, _ := openGatedCache(t, files, readAhead, cachedir.Options{MaxSize: 1 << 30})
	return l, blob
}

// openGatedCache is openGated with a cache opened with opts, returned.
func openGatedCache(t *testing.T, files []testutil.File, readAhead int64, opts cachedir.Options) (*Layer, *gateBlob, *cachedir.Dir) {
	t.Helper()
	tl := testutil.ESGZLayer(t, testutil.Tar(t, files...), testutil.ESGZOptions{ChunkSize: 8192})
	cache, err := cachedir.Open(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	blob := &gateBlob{b: tl.Blob, times: make([]int, len(tl.Blob))}
	desc := LayerDesc{Digest: tl.Desc.Digest, Size: tl.Desc.Size, TOCDigest: tl.TOCDigest}
	l, err := OpenLayer(t.Context(), blob, desc, LayerOptions{Cache: cache, ReadAhead: readAhead})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, blob, cache
}

// chunkBytes returns the compressed bytes of every non-zero chunk of l.
func chunkBytes(l *Layer) int {
	n := 0
	for _, e := range l.Index().Entries() {
		for _, c := range e.Chunks {
			if !c.Zero {
				n += int(c.CompressedEnd - c.CompressedOffset)
			}
		}
	}
	return n
}

// TestReadJoinsBackgroundFetch: a file read whose chunks a background
// request already has in flight waits for it instead of fetching them
// again.
func TestReadJoinsBackgroundFetch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, blob := openGated(t, sampleFiles(t, "join"), 0)
		gate := blob.reset()
		bg := make(chan error, 1)
		go func() { bg <- l.background(l.ctx, fetchOptions{batch: l.desc.Size}) }()
		synctest.Wait() // the background request is held by the registry
		read := make(chan []byte, 1)
		go func() {
			ent, _ := l.Index().Lookup("bin/big")
			buf := make([]byte, ent.Size)
			n, err := l.ReadAt(context.Background(), ent, buf, 0)
			if err != nil && !errors.Is(err, io.EOF) {
				t.Errorf("ReadAt() = %v", err)
			}
			read <- buf[:n]
		}()
		synctest.Wait() // the read waits too
		close(gate)
		if got := <-read; !bytes.Equal(got, bigData()) {
			t.Error("bin/big: wrong content")
		}
		if err := <-bg; err != nil {
			t.Fatalf("background() = %v", err)
		}
		total, twice := blob.fetched()
		if twice != 0 || total != chunkBytes(l) {
			t.Errorf("fetched %d bytes, %d of them again; want the %d chunk bytes once", total, twice, chunkBytes(l))
		}
	})
}

// TestBackgroundSkipsChunksBeingRead: the background fetch leaves out the
// chunks a read has in flight.
func TestBackgroundSkipsChunksBeingRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, blob := openGated(t, sampleFiles(t, "skip"), 1<<20)
		gate := blob.reset()
		read := make(chan []byte, 1)
		go func() {
			ent, _ := l.Index().Lookup("bin/big")
			buf := make([]byte, ent.Size)
			n, err := l.ReadAt(context.Background(), ent, buf, 0)
			if err != nil && !errors.Is(err, io.EOF) {
				t.Errorf("ReadAt() = %v", err)
			}
			read <- buf[:n]
		}()
		synctest.Wait() // the read's request is held by the registry
		bg := make(chan error, 1)
		go func() { bg <- l.background(l.ctx, fetchOptions{batch: l.desc.Size}) }()
		synctest.Wait()
		close(gate)
		if got := <-read; !bytes.Equal(got, bigData()) {
			t.Error("bin/big: wrong content")
		}
		if err := <-bg; err != nil {
			t.Fatalf("background() = %v", err)
		}
		total, twice := blob.fetched()
		if twice != 0 || total != chunkBytes(l) {
			t.Errorf("fetched %d bytes, %d of them again; want the %d chunk bytes once", total, twice, chunkBytes(l))
		}
	})
}

// TestWaitingReadFindsChunkBeforeItsCacheWrite: a read that waited for
// another read's fetch of its chunk finds the chunk when that fetch ends,
// even when the chunk is neither in the memory LRU (off here; a chunk
// larger than its entries never is) nor on disk yet (its cache write is
// held): the layer holds it until it is written, and nothing fetches it
// again.
func TestWaitingReadFindsChunkBeforeItsCacheWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, blob, cache := openGatedCache(t, sampleFiles(t, "held"), 0, cachedir.Options{MaxSize: 1 << 30, MemorySize: -1})
		e, _ := l.Index().Lookup("etc/hostname")
		w, err := cache.Writer(t.Context(), chunkCacheKey(e.Chunks[0])) // the layer's write of the chunk waits for it
		if err != nil {
			t.Fatal(err)
		}
		defer w.Abort()
		gate := blob.reset()
		var wg sync.WaitGroup
		got := make([][]byte, 2)
		for i := range got {
			wg.Go(func() {
				p := make([]byte, e.Size)
				n, err := l.ReadAt(context.Background(), e, p, 0)
				if err != nil && !errors.Is(err, io.EOF) {
					t.Errorf("ReadAt() = %v", err)
				}
				got[i] = p[:n]
			})
			synctest.Wait() // the first read's request is held, the second waits for it
		}
		close(gate)
		wg.Wait()
		for i, g := range got {
			if string(g) != "host-held\n" {
				t.Errorf("read %d: %q", i, g)
			}
		}
		if n := blob.readCount(); n != 1 {
			t.Errorf("2 reads of a chunk whose cache write waits made %d requests, want 1", n)
		}
	})
}
