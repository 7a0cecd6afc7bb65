// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"archive/tar"
	"bytes"
	"context"
	"testing"

	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
)

// FuzzBuild feeds arbitrary input tars to Build. Build must not panic,
// and whatever it accepts must gunzip to its DiffID and open with this
// package's reader, with every chunk decoding.
func FuzzBuild(f *testing.F) {
	f.Add(btMakeTar(f, btMixedEntries()), uint16(0), uint16(0), false)
	f.Add(btMakeTar(f, btMixedEntries()), uint16(100), uint16(300), true)
	f.Add(btMakeTar(f, btDeepEntries(10)), uint16(7), uint16(0), true)
	f.Add(btMakeTar(f, []btEntry{btRegEnt("a", []byte("first")), btRegEnt("./a", []byte("second")), btLinkEnt("l", "a")}), uint16(2), uint16(1), false)
	f.Add([]byte{}, uint16(0), uint16(0), false)
	f.Fuzz(func(t *testing.T, in []byte, chunk, minChunk uint16, prioritize bool) {
		opts := BuildOptions{MinChunkSize: int(minChunk), CompressionLevel: gzip.BestSpeed}
		if chunk != 0 {
			// Tiny chunks make a member per few bytes, which is slow
			// under coverage instrumentation and finds nothing new.
			opts.ChunkSize = 64 + int(chunk)%4096
		}
		if prioritize {
			// Prioritize the first entry, whatever it is.
			if h, err := tar.NewReader(bytes.NewReader(in)).Next(); err == nil {
				opts.PrioritizedFiles = []string{h.Name}
			}
		}
		var out bytes.Buffer
		res, err := Build(context.Background(), &out, bytes.NewReader(in), int64(len(in)), opts)
		if err != nil {
			return
		}
		blob := out.Bytes()
		if raw := btGunzipAll(t, blob); digest.FromBytes(raw) != res.DiffID {
			t.Fatalf("DiffID %s, but the blob gunzips to %s", res.DiffID, digest.FromBytes(raw))
		}
		b, err := Open(context.Background(), bytes.NewReader(blob), int64(len(blob)), OpenOptions{TOCDigest: res.TOCDigest})
		if err != nil {
			t.Fatalf("Open of a built blob: %v", err)
		}
		for _, e := range b.Index.Entries() {
			for _, c := range e.Chunks {
				if err := DecodeChunk(make([]byte, c.Size), blob[c.CompressedOffset:c.CompressedEnd], c); err != nil {
					t.Fatalf("%q: %v", e.Name, err)
				}
			}
		}
	})
}
