// SPDX-License-Identifier: Apache-2.0

package store

import (
	"bytes"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/cachedir"
	"github.com/stargz-store/stargz-store/internal/testutil"
)

// damageCache flips one byte in the middle of every file under the cache
// directory root, as a disk fault between two runs of the store might,
// and returns how many files it damaged.
func damageCache(t *testing.T, root string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			return err
		}
		b[len(b)/2] ^= 0x01
		n++
		return os.WriteFile(p, b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// damageEntry flips one byte in the middle of the file of the content
// entry dg in the cache directory root (content/<algo>/<xx>/<hex>), as a
// disk fault between two runs of the store might.
func damageEntry(t *testing.T, root string, dg digest.Digest) {
	t.Helper()
	p := filepath.Join(root, "content", string(dg.Algorithm()), dg.Encoded()[:2], dg.Encoded())
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCacheDamagedBetweenRunsServesRightBytes: every file of the cache
// (chunks, the TOC record, the whole-file entry) is damaged between two
// runs. The second run's layer reads every file right, from the
// registry, never hands out the damaged whole file, and rebuilds the
// cache.
func TestCacheDamagedBetweenRunsServesRightBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newWholeFixture(t)
		root := t.TempDir()
		cache := openCache(t, root, 1<<30)
		l, _ := f.open(t, cache, LayerOptions{})
		readFile(t, l, "data/big")
		readFile(t, l, "data/small")
		synctest.Wait() // the cache writes and the assembly
		if !cache.Has(wholeKey(entry(t, l, "data/big"))) {
			t.Fatal("no whole-file entry after the first run")
		}
		l.Close()
		cache.Close()
		damaged := damageCache(t, root)

		log, logs := testutil.NewLogger()
		cache2, err := cachedir.Open(root, cachedir.Options{MaxSize: 1 << 30, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cache2.Close() })
		l2, blob := f.open(t, cache2, LayerOptions{})
		big := entry(t, l2, "data/big")
		if got := cachedContent(t, l2, big); got != nil {
			t.Fatal("CachedFile handed out the damaged whole-file entry")
		}
		if got := readFile(t, l2, "data/big"); !bytes.Equal(got, f.big) {
			t.Fatal("data/big: wrong bytes after the cache was damaged")
		}
		if got := readFile(t, l2, "data/small"); !bytes.Equal(got, f.small) {
			t.Fatal("data/small: wrong bytes after the cache was damaged")
		}
		if total, _ := blob.fetched(); total == 0 {
			t.Fatal("nothing fetched from the registry: the damaged cache was served")
		}
		synctest.Wait()
		if got := cachedContent(t, l2, big); !bytes.Equal(got, f.big) {
			t.Fatalf("CachedFile after the refetch: %d bytes, want the file", len(got))
		}
		// The TOC record is checked by the TOC digest, not by the cache.
		if n := len(logs.Find(slog.LevelWarn, "cache entry corrupt: removed")); n != damaged-1 {
			t.Errorf("%d entries logged corrupt, want %d (every damaged file but the TOC record)", n, damaged-1)
		}
	})
}

// TestWholeFileDamagedOnDiskNotReadAfterRestart: with its chunks gone, a
// file is read from its whole-file entry; damaged, that entry is refused
// on its first read in the new process and the file comes from the
// registry.
func TestWholeFileDamagedOnDiskNotReadAfterRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newWholeFixture(t)
		root := t.TempDir()
		cache := openCache(t, root, 1<<30)
		l, _ := f.open(t, cache, LayerOptions{})
		big := entry(t, l, "data/big")
		readFile(t, l, "data/big")
		synctest.Wait()
		for _, c := range big.Chunks {
			if err := cache.Remove(chunkCacheKey(c)); err != nil {
				t.Fatal(err)
			}
		}
		l.Close()
		cache.Close()
		damageCache(t, root)

		cache2 := openCache(t, root, 1<<30)
		l2, blob := f.open(t, cache2, LayerOptions{})
		big = entry(t, l2, "data/big")
		p := make([]byte, 4096)
		if _, ok := l2.readWhole(big, p, 100000); ok {
			t.Fatal("readWhole served the damaged whole-file entry")
		}
		if got := readFile(t, l2, "data/big"); !bytes.Equal(got, f.big) {
			t.Fatal("data/big: wrong bytes")
		}
		if total, _ := blob.fetched(); total == 0 {
			t.Fatal("nothing fetched from the registry")
		}
	})
}
