// SPDX-License-Identifier: Apache-2.0

package zstdchunked

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/internal/testutil/parsetest"
	"github.com/stargz-store/stargz-store/store/index"
)

// sparseBlob is a blob of dataSize zero bytes (the data region, never
// read: Open reads only the TOC) followed by tail.
type sparseBlob struct {
	dataSize int64
	tail     []byte
}

func (s sparseBlob) size() int64 { return s.dataSize + int64(len(s.tail)) }

func (s sparseBlob) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	for ; n < len(p) && off+int64(n) < s.size(); n++ {
		if o := off + int64(n); o >= s.dataSize {
			p[n] = s.tail[o-s.dataSize]
		} else {
			p[n] = 0
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// bigBlob is a blob whose data region is dataSize bytes, with TOC JSON
// tocJSON after it, and the options that open it.
func bigBlob(dataSize int64, tocJSON []byte) (sparseBlob, OpenOptions) {
	var w handBlob
	ctoc := compress(tocJSON)
	pos := Position{Offset: dataSize + skippableHeaderSize, Length: int64(len(ctoc)), UncompressedLength: int64(len(tocJSON))}
	w.skippable(ctoc)
	d := digest.FromBytes(ctoc)
	return sparseBlob{dataSize, w.buf.Bytes()}, OpenOptions{TOCDigest: d, Annotations: map[string]string{
		ManifestPositionAnnotation: fmt.Sprintf("%d:%d:%d:1", pos.Offset, pos.Length, pos.UncompressedLength),
	}}
}

// TestOpenCaps checks that every size and offset of a TOC, the end
// offsets included, is held to the hard caps of package index and to the
// blob through a real Open.
func TestOpenCaps(t *testing.T) {
	const mib = 1 << 20
	d := digest.FromString("chunk").String()
	reg := func(size, off, end int64, more string) string {
		return fmt.Sprintf(`{"type":"reg","name":"f","size":%d,"digest":%q,"offset":%d,"endOffset":%d%s}`, size, d, off, end, more)
	}
	tests := []struct {
		name    string
		data    int64
		entries []string
		want    string // "" means Open succeeds
	}{
		{"chunk at MaxChunkSize", 70 * mib, []string{reg(index.MaxChunkSize, 0, 10, "")}, ""},
		{"chunk over MaxChunkSize", 70 * mib, []string{reg(index.MaxChunkSize+1, 0, 10, "")}, "limit 67108864"},
		{"huge declared file", 70 * mib, []string{reg(1<<50, 0, 10, "")}, "size 1125899906842624"},
		{"huge last chunk", 70 * mib, []string{
			reg(1<<40, 0, 100, fmt.Sprintf(`,"chunkSize":10,"chunkDigest":%q`, d)),
			fmt.Sprintf(`{"type":"chunk","name":"f","offset":50,"chunkOffset":10,"chunkDigest":%q}`, d),
		}, "limit 67108864"},
		{"end offset at the TOC", 70 * mib, []string{reg(10, 0, 70*mib, "")}, ""},
		{"end offset in the TOC's frame header", 70 * mib, []string{reg(10, 0, 70*mib+1, "")}, "past 73400320"},
		{"end offset past the blob", 70 * mib, []string{reg(10, 70*mib-100, 70*mib+10000, "")}, "past 73400320"},
		{"end offset before the offset", 70 * mib, []string{reg(10, 100, 50, "")}, "compressed range [100, 50)"},
		{"end offset at the offset", 70 * mib, []string{reg(10, 100, 100, "")}, "compressed range [100, 100)"},
		{"negative offset", 70 * mib, []string{reg(10, -5, 100, "")}, "compressed range [-5, 100)"},
		{"compressed range at the cap", 100 * mib, []string{reg(10, 0, index.MaxCompressedChunk, "")}, ""},
		{"compressed range over the cap", 100 * mib, []string{reg(10, 0, index.MaxCompressedChunk+1, "")}, "limit 83886080"},
		{"chunk range over the cap", 100 * mib, []string{
			reg(20, 0, 95*mib, fmt.Sprintf(`,"chunkSize":10,"chunkDigest":%q`, d)),
			fmt.Sprintf(`{"type":"chunk","name":"f","offset":90000000,"chunkOffset":10,"chunkDigest":%q}`, d),
		}, "limit 83886080"},
		{"chunk offsets go backwards", 70 * mib, []string{
			reg(20, 500, 1000, fmt.Sprintf(`,"chunkSize":10,"chunkDigest":%q`, d)),
			fmt.Sprintf(`{"type":"chunk","name":"f","offset":100,"chunkOffset":10,"chunkDigest":%q}`, d),
		}, "compressed range [500, 100)"},
		{"chunks past the file size", 70 * mib, []string{
			reg(15, 0, 1000, fmt.Sprintf(`,"chunkSize":10,"chunkDigest":%q`, d)),
			fmt.Sprintf(`{"type":"chunk","name":"f","offset":100,"chunkOffset":10,"chunkSize":10,"chunkDigest":%q}`, d),
		}, "has size 10 (file size 15)"},
		{"uid 2^32-2", 10, []string{`{"type":"fifo","name":"x","uid":4294967294}`}, ""},
		{"uid 2^32-1", 10, []string{`{"type":"fifo","name":"x","uid":4294967295}`}, "owner 4294967295:0"},
		{"uid 2^32", 10, []string{`{"type":"fifo","name":"x","uid":4294967296}`}, "owner 4294967296:0"},
		{"gid 2^32", 10, []string{`{"type":"fifo","name":"x","gid":4294967296}`}, "owner 0:4294967296"},
		{"symlink target too long", 10, []string{fmt.Sprintf(`{"type":"symlink","name":"l","linkName":%q}`, strings.Repeat("t", index.MaxLinkNameLen+1))}, "link target of 4097 bytes"},
		{"xattr name too long", 10, []string{fmt.Sprintf(`{"type":"fifo","name":"x","xattrs":{%q:"YQ=="}}`, strings.Repeat("k", index.MaxXattrNameLen+1))}, "xattr name of 256 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blob, opts := bigBlob(tt.data, tocDoc(tt.entries...))
			_, err := Open(t.Context(), blob, blob.size(), opts)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Open() = %v, want success", err)
			case tt.want != "" && (!errors.Is(err, index.ErrInvalid) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Open() error = %v, want index.ErrInvalid saying %q", err, tt.want)
			}
		})
	}
}

// TestOpenHonoursContext cancels Open at each of its context checks in
// turn, through the JSON decoding and every loop of the index build, and
// through the tar-split scan: each must stop it with the context's error.
func TestOpenHonoursContext(t *testing.T) {
	blob, opts := bigBlob(100, parsetest.ManyEntries(20000))
	tsEntries := strings.Repeat(`{"type":2,"payload":"AAAA","position":0}`+"\n", 5000)
	parsetest.CheckCancels(t, "TOC", 20000/ctxEvery, func(ctx context.Context) error {
		_, err := Open(ctx, blob, blob.size(), opts)
		return err
	})
	ts := compress([]byte(tsEntries))
	parsetest.CheckCancels(t, "tar-split", 5000/ctxEvery, func(ctx context.Context) error {
		_, err := tarSize(ctx, ts, digest.FromBytes(ts), DefaultMaxTarSplitSize)
		return err
	})
}

// BenchmarkOpenHostileTOC measures the worst case the TOC size limit
// allows, as the eStargz benchmark of the same name does.
func BenchmarkOpenHostileTOC(b *testing.B) {
	json := parsetest.ManyEntriesUpTo(DefaultMaxTOCSize)
	blob, opts := bigBlob(100, json)
	parsetest.BenchmarkParse(b, len(json), func(ctx context.Context) error {
		_, err := Open(ctx, blob, blob.size(), opts)
		return err
	})
}
