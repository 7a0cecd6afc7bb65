// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/internal/testutil"
)

// flipByte changes one byte of the file of entry key in place, as a disk
// fault would.
func flipByte(t *testing.T, d *Dir, key Key, at int64) {
	t.Helper()
	f, err := os.OpenFile(mustPath(t, d, key), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x20
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptEntryFoundAfterRestartIsAMiss: an entry damaged on disk
// between two processes is refused by every way of reading it, removed,
// and logged at Warn with its path and both digests; a sound entry next
// to it reads as before.
func TestCorruptEntryFoundAfterRestartIsAMiss(t *testing.T) {
	content := []byte(strings.Repeat("the content of an entry; ", 40000)) // 1 MB: several hash buffers
	want := digest.FromBytes(content)
	c := Content(want)
	r := Record(digest.FromString("a name, not a content digest"), want).Sized(int64(len(content)))
	reads := []struct {
		name string
		key  Key
		read func(d *Dir, k Key) ([]byte, error)
	}{
		{"ReadAll", c, func(d *Dir, k Key) ([]byte, error) { return d.ReadAll(k, 1<<30) }},
		{"ReadAt", c, func(d *Dir, k Key) ([]byte, error) {
			p := make([]byte, 10)
			_, err := d.ReadAt(k, p, 500000)
			return p, err
		}},
		{"Get", c, func(d *Dir, k Key) ([]byte, error) { return readFile(d.Get(k)) }},
		{"record ReadAll", r, func(d *Dir, k Key) ([]byte, error) { return d.ReadAll(k, 1<<30) }},
		{"record ReadAt", r, func(d *Dir, k Key) ([]byte, error) {
			p := make([]byte, len(content))
			_, err := d.ReadAt(k, p, 0)
			return p, err
		}},
		{"record Get", r, func(d *Dir, k Key) ([]byte, error) { return readFile(d.Get(k)) }},
	}
	for _, tt := range reads {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			d := open(t, root, Options{MaxSize: 1 << 30, MemorySize: -1})
			w, err := d.Writer(t.Context(), tt.key.Sized(int64(len(content))))
			if err != nil {
				t.Fatal(err)
			}
			w.Write(content)
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			sound := put(t, d, "a sound entry")
			d.Close()
			flipByte(t, d, tt.key, 700000)

			log, logs := testutil.NewLogger()
			d2 := open(t, root, Options{MaxSize: 1 << 30, MemorySize: -1, Logger: log})
			got, err := tt.read(d2, tt.key)
			if !errors.Is(err, ErrNotFound) || !errors.Is(err, ErrCorrupt) {
				t.Fatalf("read of a corrupt entry = %d bytes, %v; want ErrNotFound and ErrCorrupt", len(got), err)
			}
			if d2.Has(tt.key) {
				t.Error("corrupt entry still in the cache")
			}
			if _, err := os.Stat(mustPath(t, d2, tt.key)); !os.IsNotExist(err) {
				t.Errorf("corrupt file still on disk: %v", err)
			}
			warns := logs.Find(slog.LevelWarn, "cache entry corrupt: removed")
			if len(warns) != 1 || warns[0].Attrs["path"] != mustPath(t, d2, tt.key) ||
				warns[0].Attrs["want"] != want.String() || !strings.HasPrefix(warns[0].Attrs["got"], "sha256:") {
				t.Errorf("warnings = %v; want one with the path and both digests", warns)
			}
			if b, err := d2.ReadAll(sound, 100); err != nil || string(b) != "a sound entry" {
				t.Errorf("ReadAll(sound entry) = %q, %v", b, err)
			}
		})
	}
}

func readFile(f *os.File, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// TestEntriesCheckedOncePerProcess: entries this process committed are
// not hashed when read; entries found at Open are hashed at their first
// read only, whatever the way of reading.
func TestEntriesCheckedOncePerProcess(t *testing.T) {
	root := t.TempDir()
	d := open(t, root, Options{MaxSize: 1 << 20, MemorySize: -1})
	a, b := put(t, d, "entry a"), put(t, d, "entry b")
	for range 3 {
		if _, err := d.ReadAll(a, 100); err != nil {
			t.Fatal(err)
		}
	}
	if n := d.checks.Load(); n != 0 {
		t.Fatalf("%d checks of entries this process committed, want 0", n)
	}
	d.Close()

	d2 := open(t, root, Options{MaxSize: 1 << 20, MemorySize: -1})
	if _, err := d2.ReadAt(a, make([]byte, 3), 2); err != nil {
		t.Fatal(err)
	}
	if _, err := d2.ReadAll(a, 100); err != nil {
		t.Fatal(err)
	}
	if f, err := d2.Get(a); err != nil {
		t.Fatal(err)
	} else {
		f.Close()
	}
	if n := d2.checks.Load(); n != 1 {
		t.Fatalf("%d checks after three reads of one entry, want 1", n)
	}
	if _, err := d2.ReadAll(b, 100); err != nil {
		t.Fatal(err)
	}
	if n := d2.checks.Load(); n != 2 {
		t.Fatalf("%d checks after reading a second entry, want 2", n)
	}
}

// TestConcurrentFirstReadsHashOnce: readers of one unchecked entry wait
// for one check (run with -race).
func TestConcurrentFirstReadsHashOnce(t *testing.T) {
	root := t.TempDir()
	d := open(t, root, Options{MaxSize: 1 << 30, MemorySize: -1})
	content := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	dg := Content(digest.FromBytes(content))
	if err := d.Put(t.Context(), dg, content); err != nil {
		t.Fatal(err)
	}
	d.Close()
	d2 := open(t, root, Options{MaxSize: 1 << 30, MemorySize: -1})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			p := make([]byte, 4096)
			off := int64(i) * 100000
			if n, err := d2.ReadAt(dg, p, off); n != len(p) || err != nil || !bytes.Equal(p, content[off:off+4096]) {
				t.Errorf("ReadAt(%d) = %d, %v or wrong bytes", off, n, err)
			}
		})
	}
	wg.Wait()
	if n := d2.checks.Load(); n != 1 {
		t.Fatalf("8 concurrent first reads hashed the entry %d times, want 1", n)
	}
}

// TestEntryRemovedWhileBeingRead: removals and evictions racing with
// first reads never crash a reader nor give it wrong bytes (run with
// -race).
func TestEntryRemovedWhileBeingRead(t *testing.T) {
	root := t.TempDir()
	d := open(t, root, Options{MaxSize: 1 << 30, MemorySize: -1})
	var keys []Key
	var contents [][]byte
	for i := range 16 {
		c := bytes.Repeat([]byte{byte('a' + i)}, 300000)
		dg := Content(digest.FromBytes(c))
		if err := d.Put(t.Context(), dg, c); err != nil {
			t.Fatal(err)
		}
		keys, contents = append(keys, dg), append(contents, c)
	}
	d.Close()
	d2 := open(t, root, Options{MaxSize: 1 << 30, MemorySize: -1})
	var wg sync.WaitGroup
	for i, dg := range keys {
		wg.Go(func() {
			for range 4 {
				p := make([]byte, 1000)
				n, err := d2.ReadAt(dg, p, 1000)
				if err == nil && (n != len(p) || !bytes.Equal(p, contents[i][1000:2000])) {
					t.Errorf("ReadAt(%d): wrong bytes", i)
				}
				if err != nil && !errors.Is(err, ErrNotFound) {
					t.Errorf("ReadAt(%d) = %v, want the bytes or ErrNotFound", i, err)
				}
			}
		})
		wg.Go(func() { d2.Remove(dg) })
	}
	wg.Wait()
}

// TestEntryCheckedAsOtherContentIsAMiss: a named entry is handed out only
// to readers that want the content it was checked against; another want
// is a miss and the entry stays.
func TestEntryCheckedAsOtherContentIsAMiss(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 1 << 20, MemorySize: -1})
	content := []byte("the content")
	key := Record(digest.FromString("a name"), digest.FromBytes(content))
	w, err := d.Writer(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(content)
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadAt(Record(key.name, digest.FromString("other content")), make([]byte, 3), 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReadAt(other want) = %v, want ErrNotFound", err)
	}
	if _, err := d.ReadAt(Content(key.name), make([]byte, 3), 0); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReadAt(content key of the record's name) = %v, want ErrNotFound", err)
	}
	if !d.Has(key) {
		t.Fatal("entry removed by a reader who wanted other content")
	}
	p := make([]byte, len(content))
	if _, err := d.ReadAt(key, p, 0); err != nil || !bytes.Equal(p, content) {
		t.Fatalf("ReadAt(its want) = %q, %v", p, err)
	}
}

// TestTruncatedEntryIsAMiss: a file cut short on disk (a crash between
// write and sync, on a file system that does not order them) is a miss.
func TestTruncatedEntryIsAMiss(t *testing.T) {
	root := t.TempDir()
	d := open(t, root, Options{MaxSize: 1 << 20, MemorySize: -1})
	dg := put(t, d, "a whole entry")
	d.Close()
	if err := os.Truncate(mustPath(t, d, dg), 5); err != nil {
		t.Fatal(err)
	}
	d2 := open(t, root, Options{MaxSize: 1 << 20, MemorySize: -1})
	if b, err := d2.ReadAll(dg, 100); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReadAll(truncated) = %q, %v; want ErrNotFound", b, err)
	}
}

// TestGrownEntryIsCheckedBeforeItIsAllocated: a file that grew on disk
// between two runs (its size is what the scan found) is refused before
// ReadAll allocates that size.
func TestGrownEntryIsCheckedBeforeItIsAllocated(t *testing.T) {
	root := t.TempDir()
	d := open(t, root, Options{MaxSize: 1 << 40, MemorySize: -1})
	dg := put(t, d, "a small chunk")
	d.Close()
	if err := os.Truncate(mustPath(t, d, dg), 64<<20); err != nil { // sparse
		t.Fatal(err)
	}
	d2 := open(t, root, Options{MaxSize: 1 << 40, MemorySize: -1})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := d2.ReadAll(dg, 1<<30)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("ReadAll(grown entry) = %v, want ErrNotFound", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 8<<20 {
		t.Fatalf("ReadAll of a 64 MiB damaged entry allocated %d bytes", n)
	}
}

// TestGetSeesAChangedLength: a file whose length changed after its check
// in this process (what FUSE passthrough would hand the kernel) is
// removed by Get, not handed out, and logged.
func TestGetSeesAChangedLength(t *testing.T) {
	for _, size := range []int64{5, 64} {
		log, logs := testutil.NewLogger()
		d := open(t, t.TempDir(), Options{MaxSize: 1 << 20, MemorySize: -1, Logger: log})
		k := put(t, d, "a whole entry")
		f, err := d.Get(k)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if err := os.Truncate(mustPath(t, d, k), size); err != nil {
			t.Fatal(err)
		}
		if f, err := d.Get(k); !errors.Is(err, ErrNotFound) || !errors.Is(err, ErrCorrupt) {
			if f != nil {
				f.Close()
			}
			t.Fatalf("Get(entry now %d bytes) = %v, want ErrNotFound and ErrCorrupt", size, err)
		}
		if d.Has(k) {
			t.Errorf("entry of the wrong length (%d) kept", size)
		}
		if n := len(logs.Find(slog.LevelWarn, "cache entry has the wrong length: removed")); n != 1 {
			t.Errorf("%d warnings, want 1", n)
		}
	}
}
