// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"context"
	"errors"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/internal/testutil/parsetest"
	"github.com/stargz-store/stargz-store/store/index"
)

// rdBigBlob is a blob whose data region is dataSize bytes of zeros (never
// read: Open reads only the footer and the TOC) followed by a TOC member
// holding entries and the footer. It returns the blob and its TOC digest.
func rdBigBlob(t testing.TB, dataSize int64, entries ...map[string]any) (rdSparse, digest.Digest) {
	t.Helper()
	var w rdBlobWriter
	json := rdMustJSON(t, map[string]any{"version": 1, "entries": entries})
	w.member(t, rdTocTar(t, TOCTarName, json))
	tail := AppendFooter(w.buf.Bytes(), dataSize)
	return rdSparse{size: dataSize + int64(len(tail)), tail: tail}, digest.FromBytes(json)
}

// TestOpenCaps checks that every size and offset of a TOC is held to the
// hard caps of package index and to the blob, through a real Open: each
// case is a blob whose data region is large enough for the deflate ratio
// check to pass, so that only the cap can refuse it.
func TestOpenCaps(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name    string
		data    int64 // size of the data region (the TOC offset)
		entries []map[string]any
		want    string // "" means Open succeeds
	}{
		{"chunk at MaxChunkSize", 70 * mib, []map[string]any{rdRegE("f", index.MaxChunkSize)}, ""},
		{"chunk over MaxChunkSize", 70 * mib, []map[string]any{rdRegE("f", index.MaxChunkSize+1)}, "limit 67108864"},
		{"huge declared chunk", 70 * mib, []map[string]any{rdRegE("f", 1<<40)}, "size 1099511627776"},
		{"huge file in chunks over the cap", 70 * mib, []map[string]any{
			rdRegE("f", 1<<40, "chunkSize", 1<<20),
			rdE("name", "f", "type", "chunk", "offset", 35*mib, "chunkOffset", 1<<20, "chunkDigest", rdDigest),
		}, "limit 67108864"},
		{"compressed range at the cap", index.MaxCompressedChunk, []map[string]any{rdRegE("f", 10)}, ""},
		{"compressed range over the cap", index.MaxCompressedChunk + 1, []map[string]any{rdRegE("f", 10)}, "limit 83886080"},
		{"compressed range over the cap before another file", 100 * mib, []map[string]any{
			rdRegE("f", 10), rdRegE("g", 10, "offset", 90*mib),
		}, "limit 83886080"},
		{"inner offset over the cap", 70 * mib, []map[string]any{rdRegE("f", 10, "innerOffset", index.MaxInnerOffset+1)}, "inner offset 67108865"},
		{"inner offset past what the member inflates to", 1000, []map[string]any{rdRegE("f", 10, "innerOffset", 1100*1000)}, "cannot come from 1000 compressed bytes"},
		{"uid 2^32-2", 10, []map[string]any{rdE("name", "x", "type", "fifo", "uid", index.MaxID)}, ""},
		{"uid 2^32", 10, []map[string]any{rdE("name", "x", "type", "fifo", "uid", int64(1)<<32)}, "owner 4294967296:0"},
		{"gid 2^32", 10, []map[string]any{rdE("name", "x", "type", "fifo", "gid", int64(1)<<32)}, "owner 0:4294967296"},
		{"uid 2^32-1", 10, []map[string]any{rdE("name", "x", "type", "fifo", "uid", int64(1)<<32-1)}, "owner 4294967295:0"},
		{"symlink target too long", 10, []map[string]any{rdE("name", "l", "type", "symlink", "linkName", strings.Repeat("t", index.MaxLinkNameLen+1))}, "link target of 4097 bytes"},
		{"hard link target too long", 10, []map[string]any{rdE("name", "l", "type", "hardlink", "linkName", strings.Repeat("t", index.MaxLinkNameLen+1))}, "link target of 4097 bytes"},
		{"chunk name too long", 10, []map[string]any{rdRegE("f", 10, "chunkSize", 5), rdE("name", strings.Repeat("n", index.MaxNameLen+1), "type", "chunk", "chunkOffset", 5, "chunkDigest", rdDigest)}, "name of 4097 bytes"},
		{"xattr value too large", 10, []map[string]any{rdE("name", "x", "type", "fifo", "xattrs", map[string]any{"user.a": make([]byte, index.MaxXattrValueLen+1)})}, "of 65537 bytes"},
		{"chunks longer than the file", 1000, []map[string]any{rdRegE("f", 10, "chunkSize", 6), rdE("name", "f", "type", "chunk", "offset", 1, "chunkOffset", 6, "chunkSize", 6, "chunkDigest", rdDigest)}, "has size 6 (file size 10)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blob, d := rdBigBlob(t, tt.data, tt.entries...)
			_, err := Open(t.Context(), blob, blob.size, OpenOptions{TOCDigest: d})
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Open() = %v, want success", err)
			case tt.want != "" && (!errors.Is(err, index.ErrInvalid) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Open() error = %v, want index.ErrInvalid saying %q", err, tt.want)
			}
		})
	}
}

// TestOpenLandmark checks that .prefetch.landmark can only mark a prefix of
// the data region: one outside it is ignored (the layer stays lazy,
// without prefetch) and reported in BadLandmark.
func TestOpenLandmark(t *testing.T) {
	const data = 1 << 20
	tests := []struct {
		name   string
		offset int64
		want   int64 // PrefetchEnd
		bad    bool
	}{
		{"inside the data", 4096, 4096, false},
		{"at the TOC", data, data, false},
		{"past the TOC", data + 1, 0, true},
		{"far beyond the blob", 1 << 50, 0, true},
		{"max offset", 1<<63 - 1, 0, true},
		{"negative", -5, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// An empty landmark file has no chunk, so no other check sees
			// its offset.
			blob, d := rdBigBlob(t, data, rdRegE("a", 10), rdE("name", PrefetchLandmark, "type", "reg", "offset", tt.offset))
			b, err := Open(t.Context(), blob, blob.size, OpenOptions{TOCDigest: d})
			if err != nil {
				t.Fatal(err)
			}
			if b.PrefetchEnd != tt.want || (b.BadLandmark != nil) != tt.bad {
				t.Fatalf("PrefetchEnd = %d, BadLandmark = %v; want %d, bad %v", b.PrefetchEnd, b.BadLandmark, tt.want, tt.bad)
			}
		})
	}
}

// TestOpenHonoursContext cancels Open at each of its context checks in
// turn, through the gunzip, the JSON decoding, the chunk list and every
// loop of the index build: each must stop it with the context's error.
func TestOpenHonoursContext(t *testing.T) {
	var w rdBlobWriter
	w.member(t, []byte("x"))
	blob, d := w.finish(t, parsetest.ManyEntries(20000))
	parsetest.CheckCancels(t, "TOC", 20000/ctxEvery, func(ctx context.Context) error {
		_, err := Open(ctx, rdBytes(blob), int64(len(blob)), OpenOptions{TOCDigest: d})
		return err
	})
}

// BenchmarkOpenHostileTOC measures the worst case the TOC size limit
// allows: a DefaultMaxTOCSize TOC of small entries and hard-link chains,
// and how soon a cancellation stops it.
func BenchmarkOpenHostileTOC(b *testing.B) {
	json := parsetest.ManyEntriesUpTo(DefaultMaxTOCSize)
	var w rdBlobWriter
	w.member(b, []byte("x"))
	blob, d := w.finish(b, json)
	parsetest.BenchmarkParse(b, len(json), func(ctx context.Context) error {
		_, err := Open(ctx, rdBytes(blob), int64(len(blob)), OpenOptions{TOCDigest: d})
		return err
	})
}
