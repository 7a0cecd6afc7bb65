// SPDX-License-Identifier: Apache-2.0

package store

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"testing/synctest"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/cachedir"
	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/store/index"
)

// wholeFixture is an eStargz layer (64 KiB chunks) with a 1.5 MiB file,
// big, of 24 chunks, and a 200 KiB file, small, of 4 chunks (below
// minWholeSize).
type wholeFixture struct {
	tl         testutil.Layer
	desc       LayerDesc
	big, small []byte
}

func newWholeFixture(t *testing.T) wholeFixture {
	t.Helper()
	r := rand.NewChaCha8([32]byte{7})
	big, small := make([]byte, 3<<19), make([]byte, 200<<10)
	_, _ = r.Read(big)
	_, _ = r.Read(small)
	tl := testutil.ESGZLayer(t, testutil.Tar(t,
		testutil.File{Name: "data/"},
		testutil.File{Name: "data/big", Data: string(big)},
		testutil.File{Name: "data/small", Data: string(small)},
	), testutil.ESGZOptions{ChunkSize: 64 << 10})
	return wholeFixture{tl: tl, big: big, small: small,
		desc: LayerDesc{Digest: tl.Desc.Digest, Size: tl.Desc.Size, TOCDigest: tl.TOCDigest}}
}

// open opens the layer over a gateBlob (gate open) and cache.
func (f wholeFixture) open(t *testing.T, cache *cachedir.Dir, opts LayerOptions) (*Layer, *gateBlob) {
	t.Helper()
	blob := &gateBlob{b: f.tl.Blob, times: make([]int, len(f.tl.Blob))}
	opts.Cache = cache
	l, err := OpenLayer(t.Context(), blob, f.desc, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, blob
}

func entry(t *testing.T, l *Layer, name string) *index.Entry {
	t.Helper()
	e, ok := l.Index().Lookup(name)
	if !ok {
		t.Fatalf("no %s in the layer", name)
	}
	return e
}

// cachedContent returns what CachedFile(e) gives, or nil.
func cachedContent(t *testing.T, l *Layer, e *index.Entry) []byte {
	t.Helper()
	f, ok := l.CachedFile(e)
	if !ok {
		return nil
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWholeFileAssembledWhenLastChunkLands(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newWholeFixture(t)
		cache := openCache(t, t.TempDir(), 1<<30)
		l, blob := f.open(t, cache, LayerOptions{})
		big, small := entry(t, l, "data/big"), entry(t, l, "data/small")
		if len(big.Chunks) < 2 || big.Digest == "" {
			t.Fatalf("data/big has %d chunks, digest %q; the test needs several and a digest", len(big.Chunks), big.Digest)
		}
		if got := readFile(t, l, "data/big"); !bytes.Equal(got, f.big) {
			t.Fatal("data/big: wrong bytes")
		}
		readFile(t, l, "data/small")
		synctest.Wait() // the cache writes and the assembly
		if !cache.Has(wholeKey(big)) {
			t.Fatal("no whole-file entry for data/big after reading it all")
		}
		if cache.Has(wholeKey(small)) {
			t.Error("whole-file entry for data/small, below minWholeSize")
		}
		if got := cachedContent(t, l, big); !bytes.Equal(got, f.big) {
			t.Fatalf("CachedFile(data/big): %d bytes, want the file's %d", len(got), len(f.big))
		}
		// The chunks may go now: reads are served from the whole file.
		for _, c := range big.Chunks {
			if err := cache.Remove(chunkCacheKey(c)); err != nil {
				t.Fatal(err)
			}
		}
		blob.reset()
		close(blob.gate)
		if got := readFile(t, l, "data/big"); !bytes.Equal(got, f.big) {
			t.Fatal("data/big from the whole-file entry: wrong bytes")
		}
		if total, _ := blob.fetched(); total != 0 {
			t.Errorf("read with a whole-file entry fetched %d bytes, want 0", total)
		}
	})
}

func TestWholeFileNotAssembledFromPartialChunks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newWholeFixture(t)
		cache := openCache(t, t.TempDir(), 1<<30)
		l, _ := f.open(t, cache, LayerOptions{})
		big := entry(t, l, "data/big")
		buf := make([]byte, big.Size/2)
		if _, err := l.ReadAt(t.Context(), big, buf, 0); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if cache.Has(wholeKey(big)) {
			t.Fatal("whole-file entry made from half the chunks")
		}
		if _, ok := l.CachedFile(big); ok {
			t.Fatal("CachedFile found a whole file with half the chunks cached")
		}
	})
}

// readWithoutWholeFiles reads data/big through a layer with
// NoWholeFiles, so that every chunk of it is cached and nothing else.
func readWithoutWholeFiles(t *testing.T) (wholeFixture, *cachedir.Dir, *Layer) {
	t.Helper()
	f := newWholeFixture(t)
	cache := openCache(t, t.TempDir(), 1<<30)
	l, _ := f.open(t, cache, LayerOptions{NoWholeFiles: true})
	readFile(t, l, "data/big")
	synctest.Wait()
	return f, cache, l
}

func TestWholeFileOffWithNoWholeFiles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, cache, l := readWithoutWholeFiles(t)
		if _, ok := l.CachedFile(entry(t, l, "data/big")); ok {
			t.Fatal("CachedFile returned a whole file with NoWholeFiles")
		}
		if used, _ := cache.Usage(); used > int64(len(f.big)+len(f.small))+64<<10 {
			t.Fatalf("cache holds %d bytes, more than the chunks and TOC", used)
		}
	})
}

// TestWholeFileAssembledOnOpenAfterRestart: the chunks were cached by an
// earlier layer (an earlier run); CachedFile queues the assembly and
// returns false, never waiting for it.
func TestWholeFileAssembledOnOpenAfterRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, cache, first := readWithoutWholeFiles(t)
		first.Close()

		l, blob := f.open(t, cache, LayerOptions{})
		big := entry(t, l, "data/big")
		if _, ok := l.CachedFile(big); ok {
			t.Fatal("CachedFile returned a whole file before any assembly")
		}
		synctest.Wait()
		if got := cachedContent(t, l, big); !bytes.Equal(got, f.big) {
			t.Fatalf("CachedFile after the assembly on open: %d bytes, want %d", len(got), len(f.big))
		}
		if blob.reads != 0 {
			t.Errorf("assembly read the blob %d times, want 0", blob.reads)
		}
	})
}

func TestWholeFileAssemblyRefusesWrongContent(t *testing.T) {
	f := newWholeFixture(t)
	root := t.TempDir()
	cache := openCache(t, root, 1<<30)
	l, _ := f.open(t, cache, LayerOptions{NoWholeFiles: true})
	big := entry(t, l, "data/big")
	readFile(t, l, "data/big")
	l.Close() // waits for the cache writes
	refused := func(t *testing.T, e *index.Entry, want error) {
		t.Helper()
		if err := l.assemble(t.Context(), e); !errors.Is(err, want) {
			t.Fatalf("assemble() = %v, want %v", err, want)
		}
		if cache.Has(wholeKey(e)) {
			t.Fatal("entry committed")
		}
	}

	t.Run("file digest mismatch", func(t *testing.T) {
		e := *big
		e.Digest = digest.FromString("not the content")
		refused(t, &e, cachedir.ErrCorrupt)
	})
	t.Run("no file digest", func(t *testing.T) {
		e := *big
		e.Digest = ""
		if l.wantsWhole(&e) {
			t.Error("a file without a file digest wants a whole-file entry")
		}
		refused(t, &e, digest.ErrDigestInvalidFormat)
	})
	t.Run("chunk gone", func(t *testing.T) {
		e := *big
		if err := cache.Remove(chunkCacheKey(e.Chunks[5])); err != nil {
			t.Fatal(err)
		}
		refused(t, &e, errChunkGone)
	})
	t.Run("damaged chunk", func(t *testing.T) {
		// A chunk damaged on disk between two runs: the assembly's read
		// of it is its first check in the new process.
		c := big.Chunks[3]
		damageEntry(t, root, c.Digest)
		cache2 := openCache(t, root, 1<<30)
		l2, _ := f.open(t, cache2, LayerOptions{NoWholeFiles: true})
		e := entry(t, l2, "data/big")
		if err := l2.assemble(t.Context(), e); !errors.Is(err, errChunkGone) {
			t.Fatalf("assemble() = %v, want errChunkGone", err)
		}
		if cache2.Has(chunkCacheKey(c)) {
			t.Error("the damaged chunk the assembly found is still cached")
		}
		if cache2.Has(wholeKey(e)) {
			t.Fatal("entry committed")
		}
	})
}

func TestWholeFileWrongSizeIsNeverServed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newWholeFixture(t)
		root := t.TempDir()
		cache := openCache(t, root, 1<<30)
		l, _ := f.open(t, cache, LayerOptions{})
		big := entry(t, l, "data/big")
		readFile(t, l, "data/big")
		synctest.Wait()
		wf, ok := l.CachedFile(big)
		if !ok {
			t.Fatal("no whole-file entry")
		}
		err := os.Truncate(wf.Name(), big.Size-1)
		wf.Close()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := l.CachedFile(big); ok {
			t.Fatal("CachedFile returned a truncated whole-file entry")
		}
		if cache.Has(wholeKey(big)) {
			t.Error("truncated whole-file entry kept")
		}
	})
}

// TestWholeFileConcurrentReadersAndLayers: two layers of the same blob
// over one cache, each read by several goroutines calling CachedFile in
// between, assemble one entry with the right content (run with -race).
// The bubble also checks that no goroutine outlives the layers' Close.
func TestWholeFileConcurrentReadersAndLayers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newWholeFixture(t)
		cache := openCache(t, t.TempDir(), 1<<30)
		a, _ := f.open(t, cache, LayerOptions{})
		b, _ := f.open(t, cache, LayerOptions{})
		var wg sync.WaitGroup
		for i := range 8 {
			l := []*Layer{a, b}[i%2]
			wg.Go(func() {
				e := entry(t, l, "data/big")
				buf := make([]byte, 256<<10)
				for off := int64(0); off < e.Size; off += int64(len(buf)) {
					n, err := l.ReadAt(t.Context(), e, buf, off)
					if (err != nil && !errors.Is(err, io.EOF)) || !bytes.Equal(buf[:n], f.big[off:off+int64(n)]) {
						t.Errorf("ReadAt(%d) = %d, %v, or wrong bytes", off, n, err)
						return
					}
					if got := cachedContent(t, l, e); got != nil && !bytes.Equal(got, f.big) {
						t.Error("CachedFile: wrong bytes")
					}
				}
			})
		}
		wg.Wait()
		synctest.Wait()
		for _, l := range []*Layer{a, b} {
			if got := cachedContent(t, l, entry(t, l, "data/big")); !bytes.Equal(got, f.big) {
				t.Fatalf("CachedFile after concurrent reads: %d bytes, want the file", len(got))
			}
		}
	})
}
