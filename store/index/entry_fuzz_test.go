// SPDX-License-Identifier: Apache-2.0

package index

import (
	"encoding/binary"
	"math"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

var fuzzDigest = digest.FromString("fuzz")

// chunkSizes decodes data as uvarints: the sizes of a file's chunks.
func chunkSizes(data []byte) []int64 {
	var sizes []int64
	for len(data) > 0 && len(sizes) < 1000 {
		v, n := binary.Uvarint(data)
		if n <= 0 {
			break
		}
		data = data[n:]
		sizes = append(sizes, int64(v>>1)) // keep it non-negative
	}
	return sizes
}

// FuzzChunkAt builds a file from fuzzed chunk sizes and checks that the
// chunk locator maps every offset to the chunk covering it, and nothing
// outside [0, Size), without overflowing.
func FuzzChunkAt(f *testing.F) {
	f.Add(binary.AppendUvarint(nil, 10), int64(0))
	f.Add(binary.AppendUvarint(binary.AppendUvarint(nil, 8), 8), int64(4))
	f.Add(binary.AppendUvarint(binary.AppendUvarint(nil, 8), 2), int64(5))
	f.Add(binary.AppendUvarint(binary.AppendUvarint(nil, math.MaxUint64), math.MaxUint64), int64(math.MaxInt64))
	f.Add(binary.AppendUvarint(nil, 0), int64(-1))
	f.Add([]byte{}, int64(1))
	f.Fuzz(func(t *testing.T, data []byte, off int64) {
		sizes := chunkSizes(data)
		var total int64
		for _, s := range sizes {
			if s <= 0 || s > MaxChunkSize || total > math.MaxInt64-s {
				return // not a file a builder accepts; covered below
			}
			total += s
		}
		b := NewBuilder(Limits{})
		if err := b.Add(Entry{Name: "f", Type: TypeReg, Size: total}); err != nil {
			t.Fatal(err)
		}
		var at int64
		for i, s := range sizes {
			c := Chunk{Offset: at, Size: s, CompressedOffset: int64(i), CompressedEnd: int64(i) + 1, Digest: fuzzDigest}
			if err := b.AddChunk("f", c); err != nil {
				t.Fatalf("AddChunk(%+v): %v", c, err)
			}
			at += s
		}
		ix, err := b.Build(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		e, _ := ix.Lookup("f")
		check := func(off int64) {
			c, ok := e.ChunkAt(off)
			if ok != (off >= 0 && off < e.Size) {
				t.Fatalf("ChunkAt(%d) ok = %v for size %d", off, ok, e.Size)
			}
			if ok && (off < c.Offset || off >= c.End() || c.End() > e.Size) {
				t.Fatalf("ChunkAt(%d) = [%d, %d), which does not cover it", off, c.Offset, c.End())
			}
		}
		check(off)
		check(e.Size)
		for _, c := range e.Chunks {
			check(c.Offset)
			check(c.End() - 1)
			check(c.End())
		}
	})
}
