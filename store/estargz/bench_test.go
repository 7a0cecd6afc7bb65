// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store/index"
)

// rdBigTOC builds a blob whose TOC lists n entries shaped like a real
// layer: directories of 20 files each, most with one chunk, every 50th
// with three, every 100th a symlink, every 200th a hard link, uid names
// given once.
func rdBigTOC(b testing.TB, n int) ([]byte, digest.Digest) {
	var w rdBlobWriter
	payload := w.member(b, bytes.Repeat([]byte("p"), 4096))
	const mtime = "2024-01-02T03:04:05Z"
	entries := make([]map[string]any, 0, n)
	var lastFile string
	for i := 0; len(entries) < n; i++ {
		if i%20 == 0 {
			entries = append(entries, rdE("name", fmt.Sprintf("usr/share/pkg%05d/", i/20), "type", "dir", "mode", 0o755, "modtime", mtime))
			continue
		}
		name := fmt.Sprintf("usr/share/pkg%05d/file-%07d.txt", i/20, i)
		switch {
		case i%100 == 1:
			entries = append(entries, rdE("name", name, "type", "symlink", "linkName", "../other", "mode", 0o777, "modtime", mtime))
		case i%200 == 3 && lastFile != "":
			entries = append(entries, rdE("name", name, "type", "hardlink", "linkName", lastFile, "modtime", mtime))
		case i%50 == 7:
			entries = append(entries,
				rdE("name", name, "type", "reg", "size", 3000, "mode", 0o644, "modtime", mtime, "uid", 1000, "gid", 1000,
					"offset", payload, "chunkSize", 1000, "digest", rdDigest, "chunkDigest", rdDigest),
				rdE("name", name, "type", "chunk", "offset", payload, "innerOffset", 1000, "chunkOffset", 1000, "chunkSize", 1000, "chunkDigest", rdDigest),
				rdE("name", name, "type", "chunk", "offset", payload, "innerOffset", 2000, "chunkOffset", 2000, "chunkDigest", rdDigest))
			lastFile = name
		default:
			e := rdE("name", name, "type", "reg", "size", 1234, "mode", 0o644, "modtime", mtime,
				"offset", payload, "innerOffset", i%3, "digest", rdDigest, "chunkDigest", rdDigest)
			if i == 2 {
				e["userName"], e["groupName"] = "root", "root"
			}
			entries = append(entries, e)
			lastFile = name
		}
	}
	return w.finish(b, rdMustJSON(b, map[string]any{"version": 1, "entries": entries[:n]}))
}

func BenchmarkOpenTOC100k(b *testing.B) {
	blob, d := rdBigTOC(b, 100_000)
	opts := OpenOptions{TOCDigest: d}
	r := bytes.NewReader(blob)
	b.ReportAllocs()
	for b.Loop() {
		bl, err := Open(context.Background(), r, int64(len(blob)), opts)
		if err != nil {
			b.Fatal(err)
		}
		if bl.Index.Len() < 90_000 {
			b.Fatalf("Len() = %d", bl.Index.Len())
		}
	}
}

func BenchmarkDecodeChunk(b *testing.B) {
	for _, bc := range []struct {
		name        string
		size, inner int
	}{
		{"4MiB", 4 << 20, 0},
		{"small", 700, 0},
		{"small-packed", 700, 64 << 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			// Half noise, half text: a realistic compression ratio.
			data := append(rdNoise(7, bc.inner+bc.size/2), bytes.Repeat([]byte("text "), bc.size/10+1)...)[:bc.inner+bc.size]
			var w rdBlobWriter
			w.member(b, data)
			c := index.Chunk{Size: int64(bc.size), CompressedEnd: int64(w.buf.Len()), InnerOffset: int64(bc.inner),
				Digest: digest.FromBytes(data[bc.inner:])}
			compressed, dst := w.buf.Bytes(), make([]byte, bc.size)
			b.SetBytes(int64(bc.size))
			b.ReportAllocs()
			for b.Loop() {
				if err := DecodeChunk(dst, compressed, c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
