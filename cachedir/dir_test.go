// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

func open(t *testing.T, root string, opts Options) *Dir {
	t.Helper()
	d, err := Open(root, opts)
	if err != nil {
		t.Fatalf("Open() error = %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func put(t *testing.T, d *Dir, s string) digest.Digest {
	t.Helper()
	dg := digest.FromString(s)
	if err := d.Put(t.Context(), dg, []byte(s)); err != nil {
		t.Fatalf("Put(%q) error = %v", s, err)
	}
	return dg
}

func TestDirPutGet(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 1 << 20, MemorySize: -1})
	dg := put(t, d, "hello")
	got, err := d.ReadAll(dg)
	if err != nil || string(got) != "hello" {
		t.Fatalf("ReadAll() = %q, %v; want hello", got, err)
	}
	f, err := d.Get(dg)
	if err != nil {
		t.Fatalf("Get() error = %v", err)
	}
	f.Close()
	if used, _ := d.Usage(); used != 5 {
		t.Fatalf("Usage() = %d, want 5", used)
	}
	if _, err := d.Get(digest.FromString("absent")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(absent) error = %v, want ErrNotFound", err)
	}
	if err := d.Put(t.Context(), dg, []byte("hello")); err != nil {
		t.Fatalf("second Put() error = %v, want nil", err)
	}
	if used, _ := d.Usage(); used != 5 {
		t.Fatalf("Usage() after second Put = %d, want 5", used)
	}
}

func TestWriterCommitRefusesWrongContent(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 1 << 20})
	dg := digest.FromString("right")
	w, err := d.Writer(t.Context(), dg)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("wrong"))
	if err := w.Commit(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Commit() error = %v, want ErrCorrupt", err)
	}
	if d.Has(dg) {
		t.Fatal("corrupt entry was installed")
	}
	if ents, _ := os.ReadDir(filepath.Join(d.root, "tmp")); len(ents) != 0 {
		t.Fatalf("temporary files left: %v", ents)
	}
}

func TestDirEvictsLeastRecentlyUsedUnpinned(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 30, MemorySize: -1})
	a := put(t, d, strings.Repeat("a", 10))
	b := put(t, d, strings.Repeat("b", 10))
	c := put(t, d, strings.Repeat("c", 10))
	d.Pin(a)
	if _, err := d.ReadAll(b); err != nil { // b is now more recent than c
		t.Fatal(err)
	}
	e := put(t, d, strings.Repeat("e", 10))
	for dg, want := range map[digest.Digest]bool{a: true, b: true, c: false, e: true} {
		if got := d.Has(dg); got != want {
			t.Errorf("Has(%s) = %v, want %v", dg, got, want)
		}
	}
	if _, err := os.Stat(mustPath(t, d, c)); !os.IsNotExist(err) {
		t.Errorf("evicted file still on disk: %v", err)
	}
	d.Unpin(a)
	put(t, d, strings.Repeat("f", 10))
	if d.Has(a) {
		t.Error("unpinned least recently used entry survived eviction")
	}
}

func TestDirRefusesEntryLargerThanCache(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 4})
	if err := d.Put(t.Context(), digest.FromString("12345"), []byte("12345")); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Put() error = %v, want ErrTooLarge", err)
	}
}

func TestDirPinnedEntriesBlockEviction(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 10})
	a := put(t, d, "0123456789")
	d.Pin(a)
	if err := d.Put(t.Context(), digest.FromString("x"), []byte("x")); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Put() with a full pinned cache: error = %v, want ErrTooLarge", err)
	}
	if !d.Has(a) {
		t.Fatal("pinned entry evicted")
	}
}

func TestOpenRecovers(t *testing.T) {
	root := t.TempDir()
	d := open(t, root, Options{MaxSize: 1 << 20})
	a := put(t, d, "kept")
	d.Close()
	os.WriteFile(filepath.Join(root, "tmp", "partial.123"), []byte("half"), 0o600)
	stray := filepath.Join(root, "blobs", "sha256", "zz", "not-a-digest")
	os.MkdirAll(filepath.Dir(stray), 0o700)
	os.WriteFile(stray, []byte("junk"), 0o600)

	d2 := open(t, root, Options{MaxSize: 1 << 20})
	if !d2.Has(a) {
		t.Fatal("entry lost across reopen")
	}
	if used, _ := d2.Usage(); used != 4 {
		t.Fatalf("Usage() after recovery = %d, want 4", used)
	}
	for _, p := range []string{filepath.Join(root, "tmp", "partial.123"), stray} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s survived recovery", p)
		}
	}
}

func TestOpenEvictsDownToNewLimit(t *testing.T) {
	root := t.TempDir()
	d := open(t, root, Options{MaxSize: 100})
	put(t, d, strings.Repeat("a", 40))
	put(t, d, strings.Repeat("b", 40))
	d.Close()
	d2 := open(t, root, Options{MaxSize: 50})
	if used, _ := d2.Usage(); used > 50 {
		t.Fatalf("Usage() = %d, over the limit 50", used)
	}
}

func TestWriterOneWriterPerKey(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 1 << 20})
	dg := digest.FromString("once")
	w, err := d.Writer(t.Context(), dg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := d.Writer(t.Context(), dg)
			errs <- err
		}()
	}
	w.Write([]byte("once"))
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrExists) {
			t.Errorf("waiting writer got %v, want ErrExists", err)
		}
	}
}

func TestWriterWaitHonoursContext(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 1 << 20})
	dg := digest.FromString("slow")
	w, err := d.Writer(t.Context(), dg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := d.Writer(ctx, dg); !errors.Is(err, context.Canceled) {
		t.Fatalf("Writer() with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestMemCacheBoundedInBytes(t *testing.T) {
	m := newMemCache(10, 8)
	m.add("sha256:a", bytes.Repeat([]byte{1}, 6))
	m.add("sha256:b", bytes.Repeat([]byte{2}, 6))
	m.add("sha256:c", bytes.Repeat([]byte{3}, 9)) // over maxEntry: not kept
	if _, ok := m.get("sha256:a"); ok {
		t.Error("oldest entry kept past the byte bound")
	}
	if _, ok := m.get("sha256:b"); !ok {
		t.Error("newest entry missing")
	}
	if _, ok := m.get("sha256:c"); ok {
		t.Error("entry over the per-entry bound kept")
	}
	if m.size != 6 {
		t.Errorf("size = %d, want 6", m.size)
	}
}

func mustPath(t *testing.T, d *Dir, dg digest.Digest) string {
	t.Helper()
	p, err := d.path(dg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func FuzzKeyPath(f *testing.F) {
	for _, s := range []string{
		"sha256:" + strings.Repeat("a", 64), "sha256:../../etc/passwd", "../x", "sha512:" + strings.Repeat("0", 128),
		"sha256:" + strings.Repeat("a", 63) + "/", "",
	} {
		f.Add(s)
	}
	root := f.TempDir()
	d, err := Open(root, Options{MaxSize: 1 << 20})
	if err != nil {
		f.Fatal(err)
	}
	blobs := filepath.Join(root, "blobs") + string(filepath.Separator)
	f.Fuzz(func(t *testing.T, s string) {
		p, err := d.path(digest.Digest(s))
		if err != nil {
			return
		}
		if !strings.HasPrefix(p, blobs) || filepath.Clean(p) != p {
			t.Fatalf("path(%q) = %q escapes %q", s, p, blobs)
		}
	})
}
