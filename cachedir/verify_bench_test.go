// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"math/rand/v2"
	"os"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

// benchChunks fills a cache on root with n entries of size random bytes,
// as chunks fetched by an earlier run, and returns their keys.
func benchChunks(b *testing.B, root string, n, size int) []digest.Digest {
	b.Helper()
	d, err := Open(root, Options{MaxSize: 1 << 40, MemorySize: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	r := rand.NewChaCha8([32]byte{1})
	var keys []digest.Digest
	buf := make([]byte, size)
	for range n {
		_, _ = r.Read(buf)
		dg := digest.FromBytes(buf)
		if err := d.Put(b.Context(), Content(dg), buf); err != nil {
			b.Fatal(err)
		}
		keys = append(keys, dg)
	}
	return keys
}

// BenchmarkVerifyHash is the check of one 4 MiB entry in the page cache:
// sha256 over pread, the cost per byte of a first read in a process.
func BenchmarkVerifyHash(b *testing.B) {
	root := b.TempDir()
	keys := benchChunks(b, root, 1, 4<<20)
	d, err := Open(root, Options{MaxSize: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	p, _ := d.path(Content(keys[0]).id())
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.SetBytes(4 << 20)
	for b.Loop() {
		if got, _, err := hashFile(f, digest.SHA256); err != nil || got != keys[0] {
			b.Fatalf("hashFile = %s, %v", got, err)
		}
	}
}

// benchChunkReads reads 8 KiB from the middle of each of 32 entries of
// 4 MiB (128 MiB, in the page cache), as a container start reads a little
// of many chunks. With restart, every iteration opens a new Dir on the
// same root first (outside the timer), so every read is a first read in
// its process and checks its entry; without, the entries were checked
// once before the timer started. SetBytes counts the entries' bytes, so
// that MB/s with restart is the checking throughput.
func benchChunkReads(b *testing.B, restart bool) {
	const n, size = 32, 4 << 20
	root := b.TempDir()
	keys := benchChunks(b, root, n, size)
	d, err := Open(root, Options{MaxSize: 1 << 40, MemorySize: -1})
	if err != nil {
		b.Fatal(err)
	}
	p := make([]byte, 8192)
	read := func() {
		for _, k := range keys {
			if n, err := d.ReadAt(Content(k), p, size/2); n != len(p) || err != nil {
				b.Fatalf("ReadAt = %d, %v", n, err)
			}
		}
	}
	read()
	b.SetBytes(n * size)
	for b.Loop() {
		if restart {
			b.StopTimer()
			d.Close()
			if d, err = Open(root, Options{MaxSize: 1 << 40, MemorySize: -1}); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		read()
	}
	d.Close()
}

func BenchmarkChunkFirstReadAfterRestart(b *testing.B) { benchChunkReads(b, true) }
func BenchmarkChunkReadChecked(b *testing.B)           { benchChunkReads(b, false) }
