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

// put stores s as a content entry and returns its key.
func put(t *testing.T, d *Dir, s string) Key {
	t.Helper()
	k := Content(digest.FromString(s))
	if err := d.Put(t.Context(), k, []byte(s)); err != nil {
		t.Fatalf("Put(%q) error = %v", s, err)
	}
	return k
}

func TestDirPutGet(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 1 << 20, MemorySize: -1})
	dg := put(t, d, "hello")
	got, err := d.ReadAll(dg, 5)
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
	if _, err := d.Get(Content(digest.FromString("absent"))); !errors.Is(err, ErrNotFound) {
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
	dg := Content(digest.FromString("right"))
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
	d.Pin(a.name)
	if _, err := d.ReadAll(b, 10); err != nil { // b is now more recent than c
		t.Fatal(err)
	}
	e := put(t, d, strings.Repeat("e", 10))
	for dg, want := range map[Key]bool{a: true, b: true, c: false, e: true} {
		if got := d.Has(dg); got != want {
			t.Errorf("Has(%s) = %v, want %v", dg, got, want)
		}
	}
	if _, err := os.Stat(mustPath(t, d, c)); !os.IsNotExist(err) {
		t.Errorf("evicted file still on disk: %v", err)
	}
	d.Unpin(a.name)
	put(t, d, strings.Repeat("f", 10))
	if d.Has(a) {
		t.Error("unpinned least recently used entry survived eviction")
	}
}

func TestDirRefusesEntryLargerThanCache(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 4})
	if err := d.Put(t.Context(), Content(digest.FromString("12345")), []byte("12345")); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Put() error = %v, want ErrTooLarge", err)
	}
}

func TestDirPinnedEntriesBlockEviction(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 10})
	a := put(t, d, "0123456789")
	d.Pin(a.name)
	if err := d.Put(t.Context(), Content(digest.FromString("x")), []byte("x")); !errors.Is(err, ErrTooLarge) {
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
	var strays []string
	for _, dir := range []string{"content", "records"} {
		for _, rel := range []string{"sha256/zz/not-a-digest", "sha256/ab/" + digest.FromString("x").Encoded(), "top"} {
			stray := filepath.Join(root, dir, rel)
			os.MkdirAll(filepath.Dir(stray), 0o700)
			os.WriteFile(stray, []byte("junk"), 0o600)
			strays = append(strays, stray)
		}
	}
	r := Record(digest.FromString("a record"), "")
	if err := d.Put(t.Context(), r, []byte("record")); err != nil {
		t.Fatal(err)
	}

	d2 := open(t, root, Options{MaxSize: 1 << 20})
	if !d2.Has(a) || !d2.Has(r) {
		t.Fatal("entry lost across reopen")
	}
	if used, _ := d2.Usage(); used != 4+6 {
		t.Fatalf("Usage() after recovery = %d, want 10", used)
	}
	for _, p := range append(strays, filepath.Join(root, "tmp", "partial.123")) {
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
	dg := Content(digest.FromString("once"))
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
	dg := Content(digest.FromString("slow"))
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

func mustPath(t *testing.T, d *Dir, k Key) string {
	t.Helper()
	p, err := d.path(k.id())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// FuzzKeyPath: whatever the name, the path of a key of either kind is
// clean and inside its kind's directory, and the zero Key has none.
func FuzzKeyPath(f *testing.F) {
	for _, s := range []string{
		"sha256:" + strings.Repeat("a", 64), "sha256:../../etc/passwd", "../x", "sha512:" + strings.Repeat("0", 128),
		"sha256:" + strings.Repeat("a", 63) + "/", "", "sha256:" + strings.Repeat("a", 62) + "/.", "sha384:..",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	root := f.TempDir()
	d, err := Open(root, Options{MaxSize: 1 << 20})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := d.path(Key{}.id()); err == nil {
		f.Fatal("the zero Key has a path")
	}
	f.Fuzz(func(t *testing.T, s string, record bool) {
		k, top := Content(digest.Digest(s)), "content"
		if record {
			k, top = Record(digest.Digest(s), ""), "records"
		}
		p, err := d.path(k.id())
		if err != nil {
			return
		}
		dir := filepath.Join(root, top) + string(filepath.Separator)
		if !strings.HasPrefix(p, dir) || filepath.Clean(p) != p || strings.Count(p[len(dir):], string(filepath.Separator)) != 2 {
			t.Fatalf("path(%s) = %q escapes %q", k, p, dir)
		}
	})
}

// writeLegacy files b under name in the layout of an earlier version,
// blobs/<algo>/<xx>/<hex>, as that version did for both kinds.
func writeLegacy(t *testing.T, root string, name digest.Digest, b string) {
	t.Helper()
	p := filepath.Join(root, "blobs", string(name.Algorithm()), name.Encoded()[:2], name.Encoded())
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(b), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestOpenAdoptsEarlierLayout: the entries of an earlier version become
// content entries: chunks stay cached across the upgrade, checked at
// their first read like every entry found at Open; a record of that
// version (a made-up name) is no record now, and a read of it as content
// fails its check and removes it.
func TestOpenAdoptsEarlierLayout(t *testing.T) {
	root := t.TempDir()
	chunk := digest.FromString("a chunk")
	name := digest.FromString("a made-up name")
	writeLegacy(t, root, chunk, "a chunk")
	writeLegacy(t, root, name, "a record's bytes")
	d := open(t, root, Options{MaxSize: 1 << 20, MemorySize: -1})
	if got, err := d.ReadAll(Content(chunk), 1<<20); err != nil || string(got) != "a chunk" {
		t.Fatalf("ReadAll(adopted chunk) = %q, %v", got, err)
	}
	if d.Has(Record(name, "")) {
		t.Error("a record of the earlier layout is a record now")
	}
	if _, err := d.ReadAll(Content(name), 1<<20); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ReadAll(earlier record as content) = %v, want ErrCorrupt", err)
	}
	if used, _ := d.Usage(); used != int64(len("a chunk")) {
		t.Errorf("Usage() = %d, want the chunk's %d bytes", used, len("a chunk"))
	}
	if _, err := os.Stat(filepath.Join(root, "blobs")); !os.IsNotExist(err) {
		t.Errorf("blobs/ still there: %v", err)
	}
}

// TestOpenRemovesEarlierLayoutBesideNew: when content/ is in use
// already, the earlier tree is removed, and the entries of the new
// layout stay.
func TestOpenRemovesEarlierLayoutBesideNew(t *testing.T) {
	root := t.TempDir()
	d := open(t, root, Options{MaxSize: 1 << 20, MemorySize: -1})
	kept := put(t, d, "kept")
	d.Close()
	old := digest.FromString("old")
	writeLegacy(t, root, old, "old")
	d2 := open(t, root, Options{MaxSize: 1 << 20, MemorySize: -1})
	if !d2.Has(kept) || d2.Has(Content(old)) {
		t.Fatalf("Has(kept) = %v, Has(old) = %v; want true, false", d2.Has(kept), d2.Has(Content(old)))
	}
	if used, _ := d2.Usage(); used != 4 {
		t.Errorf("Usage() = %d, want 4", used)
	}
	if _, err := os.Stat(filepath.Join(root, "blobs")); !os.IsNotExist(err) {
		t.Errorf("blobs/ still there: %v", err)
	}
}

// TestKindsAreApart: a record and a content entry under the same digest
// are two entries, each read by its own key, counted and evicted
// together.
func TestKindsAreApart(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 1 << 20, MemorySize: 1 << 20})
	c := put(t, d, "content bytes")
	r := Record(c.name, digest.FromString("record bytes"))
	if d.Has(r) {
		t.Fatal("a content entry is found by a record key of its name")
	}
	if err := d.Put(t.Context(), r, []byte("record bytes")); err != nil {
		t.Fatalf("Put(record under a content entry's digest) = %v", err)
	}
	d.Remember(c.name, []byte("content bytes"))
	for k, want := range map[Key]string{c: "content bytes", r: "record bytes"} {
		if got, err := d.ReadAll(k, 100); err != nil || string(got) != want {
			t.Errorf("ReadAll(%s) = %q, %v; want %q", k, got, err, want)
		}
		p := make([]byte, 6)
		if n, err := d.ReadAt(k, p, 0); err != nil || string(p[:n]) != want[:6] {
			t.Errorf("ReadAt(%s) = %q, %v; want %q", k, p[:n], err, want[:6])
		}
	}
	if used, _ := d.Usage(); used != int64(len("content bytes")+len("record bytes")) {
		t.Errorf("Usage() = %d, want both entries", used)
	}
	if err := d.Remove(r); err != nil {
		t.Fatal(err)
	}
	if !d.Has(c) || d.Has(r) {
		t.Errorf("after Remove(record): Has(content) = %v, Has(record) = %v", d.Has(c), d.Has(r))
	}
}

// TestSizedKeyFindsOnlyItsSize: a reader whose key says another size
// than the entry's gets a miss, on disk and in memory, and the entry
// stays for the readers that agree with it.
func TestSizedKeyFindsOnlyItsSize(t *testing.T) {
	for _, mem := range []int64{-1, 1 << 20} {
		d := open(t, t.TempDir(), Options{MaxSize: 1 << 20, MemorySize: mem})
		k := put(t, d, "0123456789")
		d.Remember(k.name, []byte("0123456789"))
		wrong := k.Sized(11)
		if d.Has(wrong) || d.Contains(wrong) {
			t.Errorf("memory %d: Has/Contains of a key of another size = true", mem)
		}
		if _, err := d.ReadAll(wrong, 100); !errors.Is(err, ErrNotFound) {
			t.Errorf("memory %d: ReadAll(other size) = %v, want ErrNotFound", mem, err)
		}
		if _, err := d.ReadAt(wrong, make([]byte, 1), 0); !errors.Is(err, ErrNotFound) {
			t.Errorf("memory %d: ReadAt(other size) = %v, want ErrNotFound", mem, err)
		}
		if _, err := d.Get(wrong); !errors.Is(err, ErrNotFound) {
			t.Errorf("memory %d: Get(other size) = %v, want ErrNotFound", mem, err)
		}
		if _, err := d.Writer(t.Context(), wrong); !errors.Is(err, ErrExists) {
			t.Errorf("memory %d: Writer(other size) = %v, want ErrExists", mem, err)
		}
		if got, err := d.ReadAll(k.Sized(10), 100); err != nil || string(got) != "0123456789" {
			t.Errorf("memory %d: ReadAll(its size) = %q, %v", mem, got, err)
		}
	}
}
