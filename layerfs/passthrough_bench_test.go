// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/stargz-store/stargz-store/cachedir"
	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/store"
)

// BenchmarkCachedFileRead measures the first read of a file whose content
// is in the disk cache but not in the FUSE page cache (each iteration
// drops the file's pages with fadvise), through the daemon and with FUSE
// passthrough on the cache file. It backs the passthrough decision in
// docs/design.md.
func BenchmarkCachedFileRead(b *testing.B) {
	testutil.RequireFUSE(b)
	const files, size = 64, 32 << 10
	ref := mustRef(b, "registry.example/stargz/bench:v1")
	entries := []tarEntry{dir("d/", 0o755)}
	for i := range files {
		body := bytes.Repeat([]byte{byte(i)}, size)
		entries = append(entries, file(fmt.Sprintf("d/f%d", i), 0o644, string(body)))
	}
	tl := buildLayer(b, ref, buildTar(b, entries...))
	cache, err := cachedir.Open(b.TempDir(), cachedir.Options{MaxSize: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer cache.Close()
	// Fill the cache, then serve a fresh layer over it.
	warm, err := store.OpenLayer(b.Context(), bytesBlob(tl.blob), tl.desc, store.LayerOptions{Cache: cache})
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, size)
	for _, e := range warm.Index().Entries() {
		if e.Size > 0 {
			if _, err := warm.ReadAt(b.Context(), e, buf[:e.Size], 0); err != nil {
				b.Fatal(err)
			}
		}
	}
	warm.Close() // waits for the cache writes
	l, err := store.OpenLayer(b.Context(), bytesBlob(tl.blob), tl.desc, store.LayerOptions{Cache: cache})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	src := newFakeSource()
	src.add(l)
	mnt := b.TempDir()
	rec := &readCounter{}
	srv, err := Mount(context.Background(), mnt, src, Options{Recorder: rec})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { srv.Unmount(); srv.Wait() }()
	diff := filepath.Join(mnt, ref.PathElem(), tl.desc.Digest.String(), "diff", "d")
	for _, mode := range []string{"daemon", "passthrough"} {
		b.Run(mode, func(b *testing.B) {
			passthrough.Store(mode == "passthrough")
			defer passthrough.Store(false)
			b.SetBytes(size)
			rec.reads.Store(0)
			handleReads.Store(0)
			i := 0
			for b.Loop() {
				f, err := os.Open(filepath.Join(diff, fmt.Sprintf("f%d", i%files)))
				if err != nil {
					b.Fatal(err)
				}
				i++
				unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
				if n, err := f.ReadAt(buf, 0); n != size {
					b.Fatalf("read %d bytes: %v", n, err)
				}
				f.Close()
			}
			b.ReportMetric(float64(rec.reads.Load()+handleReads.Load())/float64(b.N), "daemon-reads/op")
		})
	}
}

// readCounter counts the READs the daemon served.
type readCounter struct{ reads atomic.Int64 }

func (r *readCounter) Record(a Access) {
	if a.Op == OpRead {
		r.reads.Add(1)
	}
}
