// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/stargz-store/stargz-store/cachedir"
	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/store"
)

// BenchmarkCachedFileRead measures reading a file whose content is in the
// disk cache but not in the page cache (each iteration drops the pages of
// the FUSE file and of every cache file with fadvise), with 1 MiB reads:
// through the daemon (NoPassthrough), through the daemon reading the
// cache file (passthrough not granted), and with FUSE passthrough. The
// files: 64 small ones (32 KiB, one chunk each) and one big one (32 MiB,
// 4 MiB chunks, served whole by its whole-file entry). It backs the
// passthrough decisions in docs/design.md.
func BenchmarkCachedFileRead(b *testing.B) {
	testutil.RequireFUSE(b)
	const files, small, big = 64, 32 << 10, 32 << 20
	ref := mustRef(b, "registry.example/stargz/bench:v1")
	entries := []tarEntry{dir("d/", 0o755)}
	for i := range files {
		entries = append(entries, file(fmt.Sprintf("d/f%d", i), 0o644, string(bytes.Repeat([]byte{byte(i)}, small))))
	}
	data := make([]byte, big)
	_, _ = rand.NewChaCha8([32]byte{5}).Read(data)
	entries = append(entries, file("d/big", 0o644, string(data)))
	tl := buildLayerChunks(b, ref, buildTar(b, entries...), 4<<20)
	root := b.TempDir()
	cache, err := cachedir.Open(root, cachedir.Options{MaxSize: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer cache.Close()
	l := warmLayer(b, tl, cache)
	defer l.Close()
	src := newFakeSource()
	src.add(l)
	for _, mode := range []struct {
		name string
		opts Options
	}{
		{"daemon", Options{NoPassthrough: true}},
		{"cachefile", Options{noBackingFd: true}},
		{"passthrough", Options{}},
	} {
		rec := &readCounter{}
		mode.opts.Recorder = rec
		mnt := b.TempDir()
		srv, err := Mount(context.Background(), mnt, src, mode.opts)
		if err != nil {
			b.Fatal(err)
		}
		diff := filepath.Join(mnt, ref.PathElem(), tl.desc.Digest.String(), "diff", "d")
		b.Run(mode.name+"/small", func(b *testing.B) {
			benchRead(b, rec, root, func(i int) string { return filepath.Join(diff, fmt.Sprintf("f%d", i%files)) }, small)
		})
		b.Run(mode.name+"/big", func(b *testing.B) {
			benchRead(b, rec, root, func(int) string { return filepath.Join(diff, "big") }, big)
		})
		srv.Unmount()
		srv.Wait()
	}
}

// warmLayer opens tl over cache, reads every file once and waits for the
// whole-file entries.
func warmLayer(b *testing.B, tl testLayer, cache *cachedir.Dir) *store.Layer {
	l, err := store.OpenLayer(b.Context(), bytesBlob(tl.blob), tl.desc, store.LayerOptions{Cache: cache})
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range l.Index().Entries() {
		if e.Size == 0 {
			continue
		}
		if _, err := l.ReadAt(b.Context(), e, make([]byte, e.Size), 0); err != nil {
			b.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); len(e.Chunks) > 1; time.Sleep(10 * time.Millisecond) {
			if f, ok := l.CachedFile(e); ok {
				f.Close()
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("no whole-file entry for %s", e.Name)
			}
		}
	}
	return l
}

// benchRead drops the pages of the cache under root, opens path(i), drops
// its pages and reads it with 1 MiB reads.
func benchRead(b *testing.B, rec *readCounter, root string, path func(int) string, size int) {
	b.SetBytes(int64(size))
	rec.reads.Store(0)
	buf := make([]byte, 1<<20)
	i := 0
	for b.Loop() {
		b.StopTimer()
		dropPages(b, root)
		b.StartTimer()
		f, err := os.Open(path(i))
		if err != nil {
			b.Fatal(err)
		}
		i++
		unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		n := 0
		for n < size {
			k, err := f.ReadAt(buf, int64(n))
			n += k
			if k == 0 {
				b.Fatalf("read %d of %d bytes: %v", n, size, err)
			}
		}
		f.Close()
	}
	b.ReportMetric(float64(rec.reads.Load())/float64(b.N), "daemon-reads/op")
}

// dropPages drops the page cache of every file under root (cache files
// are synced when written, so their pages are clean).
func dropPages(b *testing.B, root string) {
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	})
	if err != nil {
		b.Fatal(err)
	}
}

// readCounter counts the READs the daemon served.
type readCounter struct{ reads atomic.Int64 }

func (r *readCounter) Record(a Access) {
	if a.Op == OpRead {
		r.reads.Add(1)
	}
}
