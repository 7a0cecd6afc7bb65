// SPDX-License-Identifier: Apache-2.0

package store

import (
	"bytes"
	"context"
	"io"
	"sync/atomic"
	"testing"

	"github.com/stargz-store/stargz-store/cachedir"
	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/store/index"
)

// countingBlob is a blob in memory that counts its reads.
type countingBlob struct {
	b     []byte
	reads atomic.Int64
}

func (c *countingBlob) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	c.reads.Add(1)
	return bytes.NewReader(c.b).ReadAt(p, off)
}

// benchLayer opens a layer of sampleFiles (8 KiB chunks) over an
// in-memory blob with a cache on a temporary directory.
func benchLayer(b *testing.B, memory int64) (*Layer, *countingBlob, *index.Entry) {
	b.Helper()
	tl := testutil.ESGZLayer(b, testutil.Tar(b, sampleFiles(nil, "bench")...), testutil.ESGZOptions{ChunkSize: 8192})
	cache, err := cachedir.Open(b.TempDir(), cachedir.Options{MaxSize: 1 << 30, MemorySize: memory})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cache.Close() })
	blob := &countingBlob{b: tl.Blob}
	desc := LayerDesc{Digest: tl.Desc.Digest, Size: tl.Desc.Size, TOCDigest: tl.TOCDigest}
	l, err := OpenLayer(b.Context(), blob, desc, LayerOptions{Cache: cache, ReadAhead: 1 << 20, ReadTimeout: defaultReadTimeout})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	ent, _ := l.Index().Lookup("bin/big")
	buf := make([]byte, ent.Size)
	if _, err := l.ReadAt(b.Context(), ent, buf, 0); err != nil && err != io.EOF {
		b.Fatal(err)
	}
	l.wg.Wait() // the cache writes
	blob.reads.Store(0)
	return l, blob, ent
}

// BenchmarkChunkReadDiskCache reads one 8 KiB chunk served from the disk
// cache (the memory LRU is off).
func BenchmarkChunkReadDiskCache(b *testing.B) {
	l, blob, ent := benchLayer(b, -1)
	p := make([]byte, 8192)
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		if _, err := l.ReadAt(b.Context(), ent, p, 8192); err != nil {
			b.Fatal(err)
		}
	}
	if n := blob.reads.Load(); n != 0 {
		b.Fatalf("%d blob reads, want 0", n)
	}
}

// BenchmarkHotChunkParallel: parallel readers of one hot chunk; the
// chunk is fetched once (on the first read of a fresh layer) and then
// served from the memory LRU.
func BenchmarkHotChunkParallel(b *testing.B) {
	l, blob, ent := benchLayer(b, 64<<20)
	l.Close()
	// A fresh layer over the same cache would find it warm; measure the
	// cold fetch too: drop the chunk from the cache first.
	c, _ := ent.ChunkAt(16384)
	if err := l.cache.Remove(chunkCacheKey(c)); err != nil {
		b.Fatal(err)
	}
	l2, err := OpenLayer(b.Context(), blob, l.desc, LayerOptions{Cache: l.cache})
	if err != nil {
		b.Fatal(err)
	}
	defer l2.Close()
	ent, _ = l2.Index().Lookup("bin/big")
	blob.reads.Store(0)
	b.SetBytes(8192)
	b.RunParallel(func(pb *testing.PB) {
		p := make([]byte, 8192)
		for pb.Next() {
			if _, err := l2.ReadAt(context.Background(), ent, p, 16384); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(blob.reads.Load()), "fetches")
	if n := blob.reads.Load(); n > 1 {
		b.Fatalf("%d fetches of one chunk, want 1", n)
	}
}
