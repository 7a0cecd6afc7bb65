// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/stargz-store/stargz-store/cachedir"
	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/store"
	"github.com/stargz-store/stargz-store/store/index"
)

// failBlob serves a blob from memory until fail is set, and counts reads.
type failBlob struct {
	b     []byte
	fail  atomic.Bool
	reads atomic.Int64
}

func (f *failBlob) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	f.reads.Add(1)
	if f.fail.Load() {
		return 0, errors.New("registry gone")
	}
	return bytes.NewReader(f.b).ReadAt(p, off)
}

// wholeFS is a mounted layer whose 3 MiB file data/big (48 chunks of
// 64 KiB) is in the cache, whole-file entry included.
type wholeFS struct {
	big   []byte
	path  string // data/big through the mount
	l     *store.Layer
	e     *index.Entry
	blob  *failBlob
	cache *cachedir.Dir
	reads *readCounter
	logs  *testutil.Logs
}

func newWholeFS(t *testing.T, opts Options) wholeFS {
	t.Helper()
	testutil.CheckLeaks(t)
	testutil.RequireFUSE(t)
	big := make([]byte, 3<<20)
	_, _ = rand.NewChaCha8([32]byte{3}).Read(big)
	ref := mustRef(t, "registry.example/stargz/whole:v1")
	tl := buildLayer(t, ref, buildTar(t, dir("data/", 0o755), file("data/big", 0o644, string(big))))
	cache, err := cachedir.Open(t.TempDir(), cachedir.Options{MaxSize: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	blob := &failBlob{b: tl.blob}
	l, err := store.OpenLayer(t.Context(), blob, tl.desc, store.LayerOptions{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	e, _ := l.Index().Lookup("data/big")
	if n := len(e.Chunks); n < 2 {
		t.Fatalf("data/big has %d chunks, want several", n)
	}
	buf := make([]byte, e.Size)
	if _, err := l.ReadAt(t.Context(), e, buf, 0); err != nil {
		t.Fatal(err)
	}
	waitWholeFile(t, l, e)
	src := newFakeSource()
	src.add(l)
	rec := &readCounter{}
	log, logs := testutil.NewLogger()
	opts.Recorder, opts.Logger = rec, log
	mnt := mountLayerFS(t, src, opts)
	return wholeFS{big: big, path: filepath.Join(mnt, ref.PathElem(), tl.desc.Digest.String(), "diff", "data", "big"),
		l: l, e: e, blob: blob, cache: cache, reads: rec, logs: logs}
}

// waitWholeFile waits for the layer's background assembly of e. Polling
// with a deadline: the store has no completion signal, and this is the
// FUSE tier, not a test of timing.
func waitWholeFile(t *testing.T, l *store.Layer, e *index.Entry) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if f, ok := l.CachedFile(e); ok {
			f.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no whole-file entry 30s after caching every chunk")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// evictWhole removes e's whole-file entry from the cache, as an eviction
// would.
func (w wholeFS) evictWhole(t *testing.T) {
	t.Helper()
	f, ok := w.l.CachedFile(w.e)
	if !ok {
		t.Fatal("no whole-file entry to evict")
	}
	f.Close()
	// records/<algo>/<xx>/<hex>: a whole-file entry is a record
	hex := filepath.Base(f.Name())
	algo := filepath.Base(filepath.Dir(filepath.Dir(f.Name())))
	if err := w.cache.Remove(cachedir.Record(digest.NewDigestFromEncoded(digest.Algorithm(algo), hex), "")); err != nil {
		t.Fatal(err)
	}
	if f, ok := w.l.CachedFile(w.e); ok {
		f.Close()
		t.Fatal("whole-file entry still there after Remove")
	}
}

// readCold reads f from the start with 1 MiB reads (as the bench does),
// after dropping its pages from the page cache.
func readCold(t *testing.T, f *os.File) []byte {
	t.Helper()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	var out []byte
	buf := make([]byte, 1<<20)
	for off := int64(0); ; {
		n, err := f.ReadAt(buf, off)
		out = append(out, buf[:n]...)
		off += int64(n)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read %s at %d: %v", f.Name(), off, err)
		}
	}
}

func openRead(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// passthroughExpected reports whether the kernel should grant FUSE
// passthrough to this process: Linux >= 6.9 and root.
func passthroughExpected(t *testing.T) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var major, minor int
	rel := unix.ByteSliceToString(u.Release[:])
	if _, err := fmt.Sscanf(rel, "%d.%d", &major, &minor); err != nil {
		t.Fatalf("kernel release %q: %v", rel, err)
	}
	return os.Geteuid() == 0 && (major > 6 || major == 6 && minor >= 9)
}

// noSpliceLines fails if go-fuse logged a failed splice.
func (w wholeFS) noSpliceLines(t *testing.T) {
	t.Helper()
	for _, r := range w.logs.Records() {
		if strings.Contains(r.Msg, "trySplice") {
			t.Errorf("go-fuse tried to splice: %q", r.Msg)
		}
	}
}

// TestMountPassthroughWholeFile: a warm multi-chunk file reads right and,
// when the kernel grants passthrough, without a READ reaching the daemon.
func TestMountPassthroughWholeFile(t *testing.T) {
	w := newWholeFS(t, Options{})
	f := openRead(t, w.path)
	if got := readCold(t, f); !bytes.Equal(got, w.big) {
		t.Fatalf("read %d bytes through the mount, want the file's %d", len(got), len(w.big))
	}
	n := w.reads.reads.Load()
	if passthroughExpected(t) && n != 0 {
		t.Fatalf("%d READs reached the daemon, want 0 (passthrough)", n)
	}
	t.Logf("daemon READs: %d (passthrough expected: %v)", n, passthroughExpected(t))
	w.noSpliceLines(t)
}

// TestMountPassthroughEviction: a whole-file entry evicted while the
// file is open stays readable through the open handle and through a
// second open of the same file (the kernel needs every open of an inode
// in one mode); once all are closed, a new open reads through the store
// (or, if the kernel's RELEASEs are still on their way, through the
// evicted file the handles kept open: the same bytes).
func TestMountPassthroughEviction(t *testing.T) {
	w := newWholeFS(t, Options{})
	a := openRead(t, w.path)
	w.evictWhole(t)
	w.blob.fail.Store(true) // every byte must come from the cache
	if got := readCold(t, a); !bytes.Equal(got, w.big) {
		t.Fatal("open handle after eviction: wrong bytes")
	}
	b := openRead(t, w.path)
	if got := readCold(t, b); !bytes.Equal(got, w.big) {
		t.Fatal("second open after eviction: wrong bytes")
	}
	a.Close()
	b.Close()
	c := openRead(t, w.path)
	if got := readCold(t, c); !bytes.Equal(got, w.big) {
		t.Fatal("open after eviction: wrong bytes")
	}
}

// TestMountPassthroughFallback: when the kernel does not read the cache
// file itself (no passthrough: rootless, old kernel), the daemon serves
// 1 MiB READs from it, not from the store.
func TestMountPassthroughFallback(t *testing.T) {
	w := newWholeFS(t, Options{noBackingFd: true})
	f := openRead(t, w.path)
	// Everything but the open cache file gone: the store could not serve.
	w.evictWhole(t)
	for _, c := range w.e.Chunks {
		if err := w.cache.Remove(cachedir.Content(c.Digest)); err != nil {
			t.Fatal(err)
		}
	}
	w.blob.fail.Store(true)
	if got := readCold(t, f); !bytes.Equal(got, w.big) {
		t.Fatalf("read %d bytes through the daemon's cache file, want %d", len(got), len(w.big))
	}
	if w.reads.reads.Load() == 0 {
		t.Error("no READ reached the daemon, want all of them")
	}
	w.noSpliceLines(t)
}

// TestMountPassthroughOff: with NoPassthrough every READ reaches the
// daemon and is served through the store.
func TestMountPassthroughOff(t *testing.T) {
	w := newWholeFS(t, Options{NoPassthrough: true})
	f := openRead(t, w.path)
	if got := readCold(t, f); !bytes.Equal(got, w.big) {
		t.Fatal("wrong bytes through the store")
	}
	if w.reads.reads.Load() == 0 {
		t.Error("no READ reached the daemon with NoPassthrough")
	}
	w.noSpliceLines(t)
}

// TestMountPassthroughModeKeptWhileOpen: a file open through the store
// when its whole-file entry appears keeps being opened through the store
// until its last handle closes: the kernel fails (EIO) an open in
// passthrough mode of an inode open in the other mode.
func TestMountPassthroughModeKeptWhileOpen(t *testing.T) {
	w := newWholeFS(t, Options{})
	w.evictWhole(t)
	a := openRead(t, w.path) // through the store: no whole-file entry
	waitWholeFile(t, w.l, w.e)
	b := openRead(t, w.path)
	for _, f := range []*os.File{b, a} {
		if got := readCold(t, f); !bytes.Equal(got, w.big) {
			t.Fatalf("%d bytes read, want %d", len(got), len(w.big))
		}
	}
}
