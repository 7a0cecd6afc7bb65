// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

func TestUncheckedRecordKeepsContentUnderAName(t *testing.T) {
	root := t.TempDir()
	d := open(t, root, Options{MaxSize: 1 << 20, MemorySize: -1})
	key := Record(digest.FromString("the name, not the content"), "")
	if err := d.Put(t.Context(), key, []byte("content")); err != nil {
		t.Fatalf("Put() = %v", err)
	}
	d.Close()
	d2 := open(t, root, Options{MaxSize: 1 << 20, MemorySize: -1}) // survives a restart
	if got, err := d2.ReadAll(key, 1<<20); err != nil || string(got) != "content" {
		t.Fatalf("ReadAll() = %q, %v; want content", got, err)
	}
	if _, err := d2.ReadAll(key, 6); err == nil {
		t.Error("ReadAll() of an entry over the bound: no error")
	}
	if n := d2.checks.Load(); n != 0 {
		t.Errorf("%d checks of an unchecked record", n)
	}
}

func TestPutStaysOutOfMemory(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 1 << 20})
	dg := Content(digest.FromString("cold"))
	if err := d.Put(t.Context(), dg, []byte("cold")); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.mem.get(dg.name); ok {
		t.Error("Put kept the entry in memory")
	}
	if !d.Contains(dg) || !d.Has(dg) {
		t.Error("Put entry not on disk")
	}
	hot := digest.FromString("hot")
	d.Remember(hot, []byte("hot"))
	if !d.Contains(Content(hot)) || d.Has(Content(hot)) {
		t.Errorf("Remember: Contains = %v, Has = %v; want in memory only", d.Contains(Content(hot)), d.Has(Content(hot)))
	}
	if d.Contains(Record(hot, "")) {
		t.Error("a record key finds a content entry in memory")
	}
}

func TestConcurrentPutsStayUnderTheLimit(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 100, MemorySize: -1})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			s := fmt.Sprintf("%02d", i) + strings.Repeat("x", 18)
			d.Put(t.Context(), Content(digest.FromString(s)), []byte(s))
		})
	}
	wg.Wait()
	if used, max := d.Usage(); used > max {
		t.Fatalf("Usage() = %d, over the limit %d", used, max)
	}
}

func TestReadAtPartialFromDiskAndMemory(t *testing.T) {
	for _, mem := range []int64{-1, 1 << 20} {
		d := open(t, t.TempDir(), Options{MaxSize: 1 << 20, MemorySize: mem})
		dg := put(t, d, "0123456789")
		if mem > 0 {
			d.Remember(dg.name, []byte("0123456789"))
		}
		for range 2 { // the second read uses the file kept open
			p := make([]byte, 4)
			if n, err := d.ReadAt(dg, p, 3); n != 4 || err != nil || string(p) != "3456" {
				t.Fatalf("memory %d: ReadAt(3) = %d, %v, %q; want 3456", mem, n, err, p)
			}
			if n, err := d.ReadAt(dg, p, 8); n != 2 || !errors.Is(err, io.EOF) || string(p[:n]) != "89" {
				t.Fatalf("memory %d: ReadAt(8) = %d, %v; want 2, io.EOF", mem, n, err)
			}
		}
		if err := d.Remove(dg); err != nil {
			t.Fatal(err)
		}
		if _, err := d.ReadAt(dg, make([]byte, 1), 0); !errors.Is(err, ErrNotFound) {
			t.Fatalf("ReadAt after Remove = %v, want ErrNotFound", err)
		}
	}
}

func TestReadAtAfterEvictionOfAnOpenFile(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 20, MemorySize: -1})
	a := put(t, d, strings.Repeat("a", 10))
	if _, err := d.ReadAt(a, make([]byte, 10), 0); err != nil { // keeps a open
		t.Fatal(err)
	}
	put(t, d, strings.Repeat("b", 10))
	put(t, d, strings.Repeat("c", 10)) // evicts a
	if _, err := d.ReadAt(a, make([]byte, 10), 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReadAt of an evicted entry = %v, want ErrNotFound", err)
	}
	if _, ok := d.fds.get(a.id(), a.want); ok {
		t.Error("evicted entry still open")
	}
}

func TestWriterChecksRecordContentAndSize(t *testing.T) {
	content := []byte("the content of a whole file")
	want := digest.FromBytes(content)
	tests := []struct {
		name    string
		write   []byte
		want    digest.Digest
		size    int64
		wantErr error
	}{
		{name: "right", write: content, want: want, size: int64(len(content))},
		{name: "unchecked size", write: content, want: want, size: -1},
		{name: "wrong content", write: []byte("the content of a whole fil3"), want: want, size: int64(len(content)), wantErr: ErrCorrupt},
		{name: "short", write: content[:10], want: "", size: int64(len(content)), wantErr: ErrCorrupt},
		{name: "long", write: append(content, '!'), want: want, size: int64(len(content)), wantErr: ErrCorrupt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := open(t, t.TempDir(), Options{MaxSize: 1 << 20, MemorySize: -1})
			key := Record(digest.FromString("a name: "+tt.name), tt.want).Sized(tt.size)
			w, err := d.Writer(t.Context(), key)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort()
			w.Write(tt.write)
			if err := w.Commit(); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Commit() = %v, want %v", err, tt.wantErr)
			}
			if got := d.Has(key); got != (tt.wantErr == nil) {
				t.Fatalf("Has(key) = %v after Commit() = %v", got, tt.wantErr)
			}
			if tt.wantErr == nil {
				got := make([]byte, len(tt.write))
				if n, err := d.ReadAt(key, got, 0); n != len(got) || err != nil || !bytes.Equal(got, tt.write) {
					t.Fatalf("ReadAt(key) = %d, %v, %q; want %q", n, err, got, tt.write)
				}
				if n, ok := d.size(key, false); !ok || n != int64(len(tt.write)) {
					t.Fatalf("size(key) = %d, %v; want %d", n, ok, len(tt.write))
				}
			}
		})
	}
}

func TestDemotedEntryIsEvictedFirst(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 30})
	a := put(t, d, strings.Repeat("a", 10))
	b := put(t, d, strings.Repeat("b", 10))
	c := put(t, d, strings.Repeat("c", 10))
	d.Remember(c.name, []byte(strings.Repeat("c", 10)))
	d.Demote(c.name) // c is the newest; demoted, it goes before a
	if _, ok := d.mem.get(c.name); ok {
		t.Error("Demote kept the entry in memory")
	}
	put(t, d, strings.Repeat("e", 10))
	for dg, want := range map[Key]bool{a: true, b: true, c: false} {
		if got := d.Has(dg); got != want {
			t.Errorf("Has(%s) = %v, want %v", dg, got, want)
		}
	}
	d.Demote(digest.FromString("absent")) // no-op
}

// TestSizedWriterMakesRoomFirst: a writer that knows its size evicts and
// holds the room when it is created, so that a large entry does not fill
// the disk on its way in, and one that cannot fit fails before a byte is
// written.
func TestSizedWriterMakesRoomFirst(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 100, MemorySize: -1})
	a := put(t, d, strings.Repeat("a", 40))
	b := put(t, d, strings.Repeat("b", 40))
	content := strings.Repeat("c", 50)
	w, err := d.Writer(t.Context(), Content(digest.FromString(content)).Sized(int64(len(content))))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if d.Has(a) || !d.Has(b) {
		t.Fatalf("after a 50-byte writer: Has(a) = %v, Has(b) = %v; want a evicted for it", d.Has(a), d.Has(b))
	}
	// The room is held: a concurrent Put must not take it.
	if err := d.Put(t.Context(), Content(digest.FromString(strings.Repeat("d", 20))), []byte(strings.Repeat("d", 20))); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(content))
	if err := w.Commit(); err != nil {
		t.Fatalf("Commit() = %v", err)
	}
	if used, max := d.Usage(); used > max {
		t.Fatalf("Usage() = %d over %d", used, max)
	}
	big := Content(digest.FromString("big")).Sized(101)
	if _, err := d.Writer(t.Context(), big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Writer(101 bytes in a 100-byte cache) = %v, want ErrTooLarge", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(d.root, "tmp")); len(ents) != 0 {
		t.Errorf("temporary files left: %v", ents)
	}
}
