// SPDX-License-Identifier: Apache-2.0

package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stargz-store/stargz-store/cachedir"
	"github.com/stargz-store/stargz-store/internal/testutil"
)

// exportLayer is an eStargz layer whose blob (about 9 MiB, random file
// content) takes two pieces of the blob file's download.
type exportLayer struct {
	tl   testutil.Layer
	desc LayerDesc
}

var exportOnce = sync.OnceValue(func() []byte {
	b := make([]byte, 9<<20)
	_, _ = rand.NewChaCha8([32]byte{5}).Read(b)
	return b
})

func newExportLayer(t *testing.T) exportLayer {
	t.Helper()
	tl := testutil.ESGZLayer(t, testutil.Tar(t,
		testutil.File{Name: "data/"},
		testutil.File{Name: "data/random", Data: string(exportOnce())},
	), testutil.ESGZOptions{ChunkSize: 1 << 20})
	if tl.Desc.Size <= blobPiece {
		t.Fatalf("blob of %d bytes, want more than one piece", tl.Desc.Size)
	}
	return exportLayer{tl: tl, desc: LayerDesc{Digest: tl.Desc.Digest, Size: tl.Desc.Size, TOCDigest: tl.TOCDigest}}
}

// open opens the layer over blob and cache.
func (x exportLayer) open(t *testing.T, blob BlobReader, cache *cachedir.Dir) *Layer {
	t.Helper()
	l, err := OpenLayer(t.Context(), blob, x.desc, LayerOptions{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// checkBlobReads reads the blob file at a few places and compares.
func checkBlobReads(t *testing.T, l *Layer, want []byte) {
	t.Helper()
	for _, off := range []int64{0, 12345, int64(len(want)) - 100, blobPiece - 10} {
		p := make([]byte, 4096)
		n, err := l.ReadBlobAt(t.Context(), p, off)
		end := min(off+4096, int64(len(want)))
		if int64(n) != end-off || (err != nil && !errors.Is(err, io.EOF)) || !bytes.Equal(p[:n], want[off:end]) {
			t.Fatalf("ReadBlobAt(%d) = %d, %v or wrong bytes", off, n, err)
		}
	}
}

func TestBlobFileServesTheVerifiedBlob(t *testing.T) {
	x := newExportLayer(t)
	cache := openCache(t, t.TempDir(), 1<<30)
	blob := &gateBlob{b: x.tl.Blob, times: make([]int, len(x.tl.Blob))}
	l := x.open(t, blob, cache)
	blob.reset()
	close(blob.gate)
	checkBlobReads(t, l, x.tl.Blob)
	if total, twice := blob.fetched(); total != len(x.tl.Blob) || twice != 0 {
		t.Errorf("blob file reads fetched %d bytes (%d twice), want the blob once (%d)", total, twice, len(x.tl.Blob))
	}
	if n := blob.readCount(); n != 2 {
		t.Errorf("%d reads of the registry, want 2 pieces", n)
	}
	if !cache.Has(cachedir.Content(x.desc.Digest)) {
		t.Error("the blob is not in the cache under its digest")
	}
}

// TestBlobFileRefusesACorruptBlob: a registry serving a blob that does not
// match its digest gives the reader an error and not a byte, and the
// verdict stands for the layer: no second download.
func TestBlobFileRefusesACorruptBlob(t *testing.T) {
	x := newExportLayer(t)
	cache := openCache(t, t.TempDir(), 1<<30)
	bad := bytes.Clone(x.tl.Blob)
	bad[len(bad)/3] ^= 0x01 // in the file's chunks, not the TOC
	blob := &gateBlob{b: bad, times: make([]int, len(bad))}
	l := x.open(t, blob, cache)
	blob.reset()
	close(blob.gate)
	for range 2 {
		p := bytes.Repeat([]byte{0xAA}, 4096)
		n, err := l.ReadBlobAt(t.Context(), p, 0)
		if !errors.Is(err, ErrVerify) || n != 0 || !bytes.Equal(p, bytes.Repeat([]byte{0xAA}, 4096)) {
			t.Fatalf("ReadBlobAt of a corrupt blob = %d, %v; want 0 bytes, ErrVerify and p untouched", n, err)
		}
	}
	if n := blob.readCount(); n != 2 {
		t.Errorf("%d reads of the registry, want one download (2 pieces)", n)
	}
	if cache.Has(cachedir.Content(x.desc.Digest)) {
		t.Error("the corrupt blob was cached")
	}
}

// TestBlobFileConcurrentReadersOneDownload: readers that come while the
// download runs wait for it; one that gives up leaves it running.
func TestBlobFileConcurrentReadersOneDownload(t *testing.T) {
	x := newExportLayer(t)
	synctest.Test(t, func(t *testing.T) {
		cache := openCache(t, t.TempDir(), 1<<30)
		blob := &gateBlob{b: x.tl.Blob, times: make([]int, len(x.tl.Blob))}
		l := x.open(t, blob, cache)
		gate := blob.reset()
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() {
			if _, err := l.ReadBlobAt(ctx, make([]byte, 10), 0); !errors.Is(err, context.Canceled) {
				t.Errorf("ReadBlobAt of a reader that gave up = %v, want context.Canceled", err)
			}
		})
		synctest.Wait()
		cancel()
		wg.Wait()
		for i := range 8 {
			wg.Go(func() {
				off := int64(i) * 1000003
				p := make([]byte, 1000)
				if n, err := l.ReadBlobAt(t.Context(), p, off); n != 1000 || err != nil || !bytes.Equal(p, x.tl.Blob[off:off+1000]) {
					t.Errorf("ReadBlobAt(%d) = %d, %v or wrong bytes", off, n, err)
				}
			})
		}
		synctest.Wait()
		close(gate)
		wg.Wait()
		if total, twice := blob.fetched(); total != len(x.tl.Blob) || twice != 0 {
			t.Errorf("9 readers fetched %d bytes (%d twice), want the blob once", total, twice)
		}
	})
}

// stallBlob serves the blob until stall is set, then holds every read
// until its context ends.
type stallBlob struct {
	b     []byte
	stall atomic.Bool
	reads atomic.Int64
}

func (s *stallBlob) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if s.stall.Load() {
		s.reads.Add(1)
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return bytes.NewReader(s.b).ReadAt(p, off)
}

// TestBlobFileStalledRegistryIsAnError: a registry that stops sending
// ends the download after blobAttempts attempts of blobPieceTimeout each;
// the reader gets an error, no bytes.
func TestBlobFileStalledRegistryIsAnError(t *testing.T) {
	x := newExportLayer(t)
	synctest.Test(t, func(t *testing.T) {
		cache := openCache(t, t.TempDir(), 1<<30)
		blob := &stallBlob{b: x.tl.Blob}
		l := x.open(t, blob, cache)
		blob.stall.Store(true)
		start := time.Now()
		n, err := l.ReadBlobAt(t.Context(), make([]byte, 10), 0)
		if n != 0 || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("ReadBlobAt over a stalled registry = %d, %v; want 0, DeadlineExceeded", n, err)
		}
		if d := time.Since(start); d != blobAttempts*blobPieceTimeout {
			t.Errorf("the reader waited %v, want %v", d, blobAttempts*blobPieceTimeout)
		}
		if got := blob.reads.Load(); got != blobAttempts {
			t.Errorf("%d attempts, want %d", got, blobAttempts)
		}
		blob.stall.Store(false) // a stall is not a verdict: the next read tries again
		checkBlobReads(t, l, x.tl.Blob)
	})
}

func TestBlobFileLargerThanTheCache(t *testing.T) {
	x := newExportLayer(t)
	cache := openCache(t, t.TempDir(), x.desc.Size-1)
	blob := &gateBlob{b: x.tl.Blob, times: make([]int, len(x.tl.Blob))}
	l := x.open(t, blob, cache)
	blob.reset()
	close(blob.gate)
	if _, err := l.ReadBlobAt(t.Context(), make([]byte, 10), 0); !errors.Is(err, cachedir.ErrTooLarge) {
		t.Fatalf("ReadBlobAt with a cache smaller than the blob = %v, want ErrTooLarge", err)
	}
	if n := blob.readCount(); n != 0 {
		t.Errorf("%d reads of the registry for a blob that cannot be cached, want 0", n)
	}
}

func TestBlobFileNeedsTheCache(t *testing.T) {
	x := newExportLayer(t)
	l, err := OpenLayer(t.Context(), &gateBlob{b: x.tl.Blob, times: make([]int, len(x.tl.Blob))}, x.desc, LayerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.ReadBlobAt(t.Context(), make([]byte, 10), 0); !errors.Is(err, errNoCache) {
		t.Fatalf("ReadBlobAt without a cache = %v, want errNoCache", err)
	}
}

// TestBlobFileDamagedInTheCacheIsDownloadedAgain: after a restart, the
// blob's cache entry is checked before its first read; damaged, it is
// downloaded again.
func TestBlobFileDamagedInTheCacheIsDownloadedAgain(t *testing.T) {
	x := newExportLayer(t)
	root := t.TempDir()
	cache := openCache(t, root, 1<<30)
	blob := &gateBlob{b: x.tl.Blob, times: make([]int, len(x.tl.Blob))}
	l1 := x.open(t, blob, cache)
	checkBlobReads(t, l1, x.tl.Blob)
	l1.Close()
	cache.Close()
	damageCache(t, root)

	cache2 := openCache(t, root, 1<<30)
	l2 := x.open(t, blob, cache2)
	blob.reset()
	close(blob.gate)
	checkBlobReads(t, l2, x.tl.Blob)
	if total, _ := blob.fetched(); total < len(x.tl.Blob) {
		t.Errorf("fetched %d bytes after the damage, want the blob again", total)
	}
}
