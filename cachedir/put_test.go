// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

func TestPutNamedKeepsContentUnderAName(t *testing.T) {
	root := t.TempDir()
	d := open(t, root, Options{MaxSize: 1 << 20, MemorySize: -1})
	key := digest.FromString("the name, not the content")
	if err := d.PutNamed(t.Context(), key, []byte("content")); err != nil {
		t.Fatalf("PutNamed() = %v", err)
	}
	d.Close()
	d2 := open(t, root, Options{MaxSize: 1 << 20, MemorySize: -1}) // survives a restart
	if got, err := d2.ReadAll(key); err != nil || string(got) != "content" {
		t.Fatalf("ReadAll() = %q, %v; want content", got, err)
	}
}

func TestPutColdStaysOutOfMemory(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 1 << 20})
	dg := digest.FromString("cold")
	if err := d.PutCold(t.Context(), dg, []byte("cold")); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.mem.get(dg); ok {
		t.Error("PutCold kept the entry in memory")
	}
	if !d.Contains(dg) || !d.Has(dg) {
		t.Error("PutCold entry not on disk")
	}
	hot := digest.FromString("hot")
	d.Remember(hot, []byte("hot"))
	if !d.Contains(hot) || d.Has(hot) {
		t.Errorf("Remember: Contains = %v, Has = %v; want in memory only", d.Contains(hot), d.Has(hot))
	}
}

func TestConcurrentPutsStayUnderTheLimit(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 100, MemorySize: -1})
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			s := fmt.Sprintf("%02d", i) + strings.Repeat("x", 18)
			d.Put(t.Context(), digest.FromString(s), []byte(s))
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
	if _, ok := d.fds.get(a); ok {
		t.Error("evicted entry still open")
	}
}
