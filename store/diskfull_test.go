// SPDX-License-Identifier: Apache-2.0

package store

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"testing/synctest"

	"github.com/stargz-store/stargz-store/cachedir"
	"github.com/stargz-store/stargz-store/internal/testutil"
)

// TestReadsGoOnWhenTheCacheDiskIsFull: the cache sits on a 4 MiB tmpfs
// and the layer holds 9 MiB of files. Every file reads right (from memory
// and the registry) while the cache's writes find the disk full; the
// cache evicts, stays within the disk, warns once, and keeps working.
func TestReadsGoOnWhenTheCacheDiskIsFull(t *testing.T) {
	root := testutil.Tmpfs(t, 4<<20)
	synctest.Test(t, func(t *testing.T) {
		r := rand.NewChaCha8([32]byte{9})
		files := []testutil.File{{Name: "data/"}}
		want := map[string][]byte{}
		for i := range 9 {
			b := make([]byte, 1<<20)
			_, _ = r.Read(b)
			name := fmt.Sprintf("data/f%d", i)
			files = append(files, testutil.File{Name: name, Data: string(b)})
			want[name] = b
		}
		tl := testutil.ESGZLayer(t, testutil.Tar(t, files...), testutil.ESGZOptions{ChunkSize: 256 << 10})
		log, logs := testutil.NewLogger()
		cache, err := cachedir.Open(root, cachedir.Options{MaxSize: 64 << 20, MemorySize: 2 << 20, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cache.Close() })
		blob := &gateBlob{b: tl.Blob, times: make([]int, len(tl.Blob))}
		desc := LayerDesc{Digest: tl.Desc.Digest, Size: tl.Desc.Size, TOCDigest: tl.TOCDigest}
		l, err := OpenLayer(t.Context(), blob, desc, LayerOptions{Cache: cache, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		for range 2 { // the second round reads what the first could not keep
			for name, b := range want {
				if got := readFile(t, l, name); !bytes.Equal(got, b) {
					t.Fatalf("%s: wrong bytes with the cache disk full", name)
				}
			}
			synctest.Wait()
		}
		used, limit := cache.Usage()
		if used > 4<<20 || limit >= 64<<20 {
			t.Errorf("cache usage %d, limit %d: want usage within the 4 MiB disk and the limit lowered", used, limit)
		}
		if n := len(logs.Find(slog.LevelWarn, "cache disk full: limit lowered and entries evicted; reads go on from memory and the registry")); n != 1 {
			t.Errorf("%d warnings about the full disk, want 1", n)
		}
	})
}
