// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/internal/testutil"
)

// fullHook fails the disk operation op with errno while on is set.
func fullHook(on *atomic.Bool, op string, errno syscall.Errno) func(string) error {
	return func(o string) error {
		if on.Load() && o == op {
			return &fs.PathError{Op: o, Path: "injected", Err: errno}
		}
		return nil
	}
}

func putN(t *testing.T, d *Dir, n, size int, tag string) []digest.Digest {
	t.Helper()
	var out []digest.Digest
	for i := range n {
		b := bytes.Repeat([]byte(fmt.Sprintf("%s-%03d|", tag, i)), size/9+1)[:size]
		dg := digest.FromBytes(b)
		if err := d.Put(t.Context(), Content(dg), b); err != nil {
			t.Fatalf("Put(%s %d) = %v", tag, i, err)
		}
		out = append(out, dg)
	}
	return out
}

// TestDiskFullLowersLimitAndWarnsOnce: a write that finds the disk full
// (each disk operation of a write in turn, ENOSPC and EDQUOT) fails, the
// limit drops a margin below what the cache holds and eviction runs; the
// condition is logged at Warn once while it lasts, again after it has
// cleared and recurs.
func TestDiskFullLowersLimitAndWarnsOnce(t *testing.T) {
	for _, op := range []string{"create", "write", "sync", "rename"} {
		for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT} {
			t.Run(op+"/"+errno.Error(), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) { testDiskFull(t, op, errno) })
			})
		}
	}
}

func testDiskFull(t *testing.T, op string, errno syscall.Errno) {
	const max = 64 << 20 // margin: 2 MiB
	log, logs := testutil.NewLogger()
	d := open(t, t.TempDir(), Options{MaxSize: max, MemorySize: -1, Logger: log})
	var full atomic.Bool
	d.hook = fullHook(&full, op, errno)
	putN(t, d, 16, 512<<10, "before") // 8 MiB
	full.Store(true)
	for i := range 3 {
		b := []byte(fmt.Sprint("lost ", i))
		if err := d.Put(t.Context(), Content(digest.FromBytes(b)), b); !errors.Is(err, errno) {
			t.Fatalf("Put on a full disk = %v, want %v", err, errno)
		}
	}
	used, limit := d.Usage()
	if limit > 8<<20-2<<20 || used > limit {
		t.Fatalf("Usage() after a full disk = %d, limit %d; want the limit 2 MiB below 8 MiB and usage under it", used, limit)
	}
	if ents, _ := os.ReadDir(filepath.Join(d.root, "tmp")); len(ents) != 0 {
		t.Errorf("temporary files left: %v", ents)
	}
	warn := func() int {
		return len(logs.Find(slog.LevelWarn, "cache disk full: limit lowered and entries evicted; reads go on from memory and the registry"))
	}
	if n := warn(); n != 1 {
		t.Fatalf("%d warnings for one full disk, want 1", n)
	}

	full.Store(false) // room again; the lowered limit holds until fullRetry
	putN(t, d, 4, 512<<10, "after")
	if used, l := d.Usage(); l != limit || used > limit {
		t.Fatalf("Usage() before fullRetry = %d, limit %d; want the limit %d kept", used, l, limit)
	}
	time.Sleep(fullRetry)
	putN(t, d, 1, 512<<10, "later")
	if _, l := d.Usage(); l != max {
		t.Fatalf("limit %d after fullRetry with free space, want %d", l, max)
	}
	if n := len(logs.Find(slog.LevelInfo, "cache disk has room again")); n != 1 {
		t.Errorf("%d 'room again' lines, want 1", n)
	}
	full.Store(true)
	d.Put(t.Context(), Content(digest.FromString("recurs")), []byte("recurs"))
	if n := warn(); n != 2 {
		t.Fatalf("%d warnings after the condition cleared and recurred, want 2", n)
	}
}

// TestDiskFullWithNothingCached: a disk filled by others leaves the cache
// a zero limit; writes are refused without touching the disk.
func TestDiskFullWithNothingCached(t *testing.T) {
	d := open(t, t.TempDir(), Options{MaxSize: 64 << 20, MemorySize: -1})
	var full atomic.Bool
	full.Store(true)
	d.hook = fullHook(&full, "write", syscall.ENOSPC)
	if err := d.Put(t.Context(), Content(digest.FromString("x")), []byte("x")); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put() = %v, want ENOSPC", err)
	}
	full.Store(false)
	if _, limit := d.Usage(); limit != 0 {
		t.Fatalf("limit = %d, want 0", limit)
	}
	if err := d.Put(t.Context(), Content(digest.FromString("y")), []byte("y")); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Put() under a zero limit = %v, want ErrTooLarge", err)
	}
}

// TestDiskFullTmpfs fills a real 4 MiB tmpfs: the write that finds it
// full fails with ENOSPC, usage drops, later writes succeed and what the
// cache still holds reads back right. Root only (mount).
func TestDiskFullTmpfs(t *testing.T) {
	root := testutil.Tmpfs(t, 4<<20)
	log, logs := testutil.NewLogger()
	d := open(t, root, Options{MaxSize: 64 << 20, MemorySize: -1, Logger: log})
	var kept []digest.Digest
	content := map[digest.Digest][]byte{}
	var full error
	var before int64
	for i := 0; i < 64 && full == nil; i++ {
		b := bytes.Repeat([]byte{byte(i)}, 256<<10)
		dg := digest.FromBytes(b)
		before, _ = d.Usage()
		if full = d.Put(t.Context(), Content(dg), b); full == nil {
			kept, content[dg] = append(kept, dg), b
		}
	}
	if !errors.Is(full, syscall.ENOSPC) {
		t.Fatalf("filling a 4 MiB tmpfs: error %v, want ENOSPC", full)
	}
	after, limit := d.Usage()
	t.Logf("full at %d bytes; usage now %d, limit %d", before, after, limit)
	if after >= before || after > limit {
		t.Fatalf("usage %d after the full disk (was %d, limit %d): nothing evicted", after, before, limit)
	}
	for i := range 16 {
		b := bytes.Repeat([]byte{byte(100 + i)}, 256<<10)
		if err := d.Put(t.Context(), Content(digest.FromBytes(b)), b); err != nil {
			t.Fatalf("Put %d after eviction = %v", i, err)
		}
	}
	for _, dg := range kept {
		got, err := d.ReadAll(Content(dg), 1<<20)
		if errors.Is(err, ErrNotFound) {
			continue // evicted
		}
		if err != nil || !bytes.Equal(got, content[dg]) {
			t.Fatalf("ReadAll(%s) = %d bytes, %v; want its content", dg, len(got), err)
		}
	}
	if n := len(logs.Find(slog.LevelWarn, "cache disk full: limit lowered and entries evicted; reads go on from memory and the registry")); n != 1 {
		t.Errorf("%d warnings, want 1", n)
	}
}
