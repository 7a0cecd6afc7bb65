// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store/index"
)

func FuzzParseFooter(f *testing.F) {
	for _, tt := range rdFooterCases() {
		f.Add(tt.tail)
	}
	f.Fuzz(func(t *testing.T, tail []byte) {
		got, err := ParseFooter(tail)
		switch {
		case errors.Is(err, ErrExternalTOC):
			if !got.External || got.Size != ExternalTOCFooterSize {
				t.Fatalf("ParseFooter(%x) = %+v with %v", tail, got, err)
			}
		case err != nil:
			if !errors.Is(err, ErrNotEStargz) || got != (Footer{}) {
				t.Fatalf("ParseFooter(%x) = %+v, %v", tail, got, err)
			}
		case got.TOCOffset < 0 || got.External || (got.Size != FooterSize && got.Size != LegacyFooterSize):
			t.Fatalf("ParseFooter(%x) = %+v", tail, got)
		case got.Size == FooterSize:
			// What parses re-encodes to an equivalent footer.
			if again, err := ParseFooter(AppendFooter(nil, got.TOCOffset)); err != nil || again != got {
				t.Fatalf("ParseFooter(AppendFooter(%d)) = %+v, %v; want %+v", got.TOCOffset, again, err, got)
			}
		}
	})
}

// rdFuzzPrefix is the payload part of fuzzed blobs: a few real members,
// so that TOC offsets can point at gzip data.
func rdFuzzPrefix(t testing.TB) []byte {
	var w rdBlobWriter
	w.member(t, []byte("hello, world\n"))
	w.member(t, bytes.Repeat([]byte("ab"), 3000))
	w.member(t, []byte("x"))
	return w.buf.Bytes()
}

// FuzzOpen feeds Open two kinds of input. With wrap set, data is TOC JSON,
// placed after rdFuzzPrefix in a well-formed blob with the matching
// digest, which exercises the TOC parser. Otherwise data is a whole blob,
// and the digest is computed from whatever TOC it holds, which exercises
// the footer, gzip and tar handling. Open must never panic, and what it
// accepts must keep every chunk inside the blob.
func FuzzOpen(f *testing.F) {
	for _, tt := range rdTOCCases() {
		if json := rdMustJSON(f, map[string]any{"version": 1, "entries": tt.entries}); len(json) < 64<<10 {
			f.Add(json, true) // large seeds only slow the fuzzer down
		}
	}
	for _, tt := range rdRawTOCCases() {
		f.Add([]byte(tt.json), true)
	}
	for _, seed := range rdCapSeeds(f) {
		f.Add(seed, true)
	}
	f.Add(rdMustJSON(f, map[string]any{"version": 1, "entries": []map[string]any{
		rdRegE("a", 13, "offset", 0), rdRegE("b", 100, "offset", 33, "chunkSize", 40),
		rdE("type", "chunk", "offset", 33, "innerOffset", 40, "chunkOffset", 40, "chunkSize", 60, "chunkDigest", rdDigest),
		rdE("name", "c", "type", "hardlink", "linkName", "b"),
	}}), true)
	blob, _ := rdTocBlob(f, rdE("name", "a", "type", "fifo"))
	f.Add(blob, false)
	f.Add(AppendFooter(nil, 0), false)
	f.Add(append(rdGzip(f, []byte("x")), rdLegacyFooter(0)...), false)
	prefix := rdFuzzPrefix(f)
	f.Fuzz(func(t *testing.T, data []byte, wrap bool) {
		var d digest.Digest
		if wrap {
			w := rdBlobWriter{}
			w.buf.Write(prefix)
			data, d = w.finish(t, data)
		} else {
			d = rdFuzzTOCDigest(data)
		}
		b, err := Open(context.Background(), bytes.NewReader(data), int64(len(data)), OpenOptions{TOCDigest: d, MaxTOCSize: 1 << 20})
		if err != nil {
			return
		}
		rdCheckChunks(t, data, b)
	})
}

// rdCapSeeds are TOC JSON documents at and past the hard caps of package
// index and at the edges of what a landmark may point at.
func rdCapSeeds(t testing.TB) [][]byte {
	doc := func(entries ...map[string]any) []byte {
		return rdMustJSON(t, map[string]any{"version": 1, "entries": entries})
	}
	chain := []map[string]any{rdE("name", "f", "type", "fifo")}
	for i := range 50 {
		// Each link names the next, which comes later in the TOC.
		target := fmt.Sprintf("l%d", i+1)
		if i == 49 {
			target = "f"
		}
		chain = append(chain, rdE("name", fmt.Sprintf("l%d", i), "type", "hardlink", "linkName", target))
	}
	many := make([]map[string]any, 300)
	for i := range many {
		many[i] = rdE("name", fmt.Sprintf("d%d/f%d", i%7, i), "type", "fifo")
	}
	return [][]byte{
		doc(rdE("name", "u", "type", "fifo", "uid", int64(1)<<32)),
		doc(rdE("name", "u", "type", "fifo", "gid", int64(1)<<32-1, "uid", index.MaxID)),
		doc(rdRegE("big", int64(1)<<40)),
		doc(rdRegE("big", index.MaxChunkSize+1, "chunkSize", 0)),
		doc(rdRegE("a", 10, "innerOffset", index.MaxInnerOffset+1)),
		doc(rdRegE("a", 10), rdE("name", PrefetchLandmark, "type", "reg", "offset", int64(1)<<50)),
		doc(rdRegE("a", 10), rdE("name", PrefetchLandmark, "type", "reg", "size", 1, "offset", int64(1)<<62, "chunkDigest", rdDigest)),
		doc(rdE("name", "a", "type", "symlink", "linkName", strings.Repeat("t", index.MaxLinkNameLen+1))),
		doc(rdE("name", "x", "type", "fifo", "xattrs", map[string]any{strings.Repeat("k", index.MaxXattrNameLen+1): "eQ=="})),
		doc(chain...),
		doc(append(chain[1:], rdE("name", "l50", "type", "hardlink", "linkName", "l0"))...),
		doc(many...),
		// The rules package index applies to both formats (AddTOC).
		doc(rdE("name", "d", "type", "dir", "size", 5)),
		doc(rdE("name", "f", "type", "fifo", "mode", 0o100644, "modtime", "2024-05-06T07:08:09,5+02:00", "devMajor", 1, "devMinor", 3)),
		doc(rdE("name", "f", "type", "fifo", "mode", int64(1)<<32, "modtime", "2024-05-06T24:00:00Z")),
		doc(rdE("name", "d", "type", "dir", "digest", "not a digest", "linkName", "x")),
		doc(rdE("name", "x", "type", "fifo", "xattrs", map[string]any{"user.a": nil, "user.b": "YQ"})),
		doc(rdE("name", "x", "type", "fifo", "xattrs", map[string]any{"user.a": strings.Repeat("A", 90000)})),
		doc(rdRegE("a", 10, "chunkSize", 4), rdE("name", "./a", "type", "chunk", "chunkOffset", 4, "chunkDigest", rdDigest)),
		doc(rdE("name", "d", "type", "dir"), rdE("name", "d", "type", "chunk", "chunkDigest", rdDigest)),
	}
}

// rdFuzzTOCDigest returns the digest of the TOC JSON in blob, if it has
// one, so that fuzzed blobs get past verification.
func rdFuzzTOCDigest(blob []byte) digest.Digest {
	d := digest.FromString("")
	f, err := ParseFooter(blob[max(0, len(blob)-FooterSize):])
	if err != nil || f.TOCOffset >= int64(len(blob))-f.Size {
		return d
	}
	if _, got, err := tocJSONFrom(context.Background(), blob[f.TOCOffset:int64(len(blob))-f.Size], 1<<20, digest.SHA256); err == nil {
		d = got
	}
	return d
}

// rdCheckChunks checks the invariants of an opened blob (package index's
// caps among them) and decodes its chunks, which must fail cleanly or
// succeed.
func rdCheckChunks(t *testing.T, blob []byte, b *Blob) {
	for _, e := range b.Index.Entries() {
		if e.UID < 0 || e.UID > index.MaxID || e.GID < 0 || e.GID > index.MaxID || len(e.LinkName) > index.MaxLinkNameLen {
			t.Fatalf("%q: owner %d:%d, link target of %d bytes", e.Name, e.UID, e.GID, len(e.LinkName))
		}
		var next int64
		for _, c := range e.Chunks {
			if c.Offset != next || c.Size <= 0 || c.Size > index.MaxChunkSize || c.CompressedOffset < 0 ||
				c.CompressedEnd <= c.CompressedOffset || c.CompressedEnd > b.TOCOffset ||
				c.CompressedEnd-c.CompressedOffset > index.MaxCompressedChunk || c.InnerOffset < 0 || c.InnerOffset > index.MaxInnerOffset {
				t.Fatalf("%q: bad chunk %+v (TOC at %d)", e.Name, c, b.TOCOffset)
			}
			next = c.End()
			if c.Size > 1<<20 || c.InnerOffset > 1<<20 {
				continue // valid but too large to decode in a fuzz run
			}
			dst := make([]byte, c.Size)
			_ = DecodeChunk(dst, blob[c.CompressedOffset:c.CompressedEnd], c)
		}
		if e.Type == index.TypeReg && next != e.Size {
			t.Fatalf("%q: chunks cover %d of %d bytes", e.Name, next, e.Size)
		}
	}
	if b.PrefetchEnd < 0 || b.PrefetchEnd > b.TOCOffset {
		t.Fatalf("PrefetchEnd %d outside [0, %d]", b.PrefetchEnd, b.TOCOffset)
	}
}
