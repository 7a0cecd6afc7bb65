// SPDX-License-Identifier: Apache-2.0

package zstdchunked

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store/index"
)

// tarFile is one tar entry for makeTar.
type tarFile struct {
	name   string
	typ    byte // 0 means tar.TypeReg
	body   []byte
	link   string
	mode   int64
	xattrs map[string]string
}

// makeTar returns an uncompressed tar of files, in order.
func makeTar(t testing.TB, files ...tarFile) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Typeflag: f.typ, Linkname: f.link, Mode: f.mode, Format: tar.FormatPAX}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(f.body))
		}
		for k, v := range f.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// buildBlob runs Build on tarball.
func buildBlob(t testing.TB, tarball []byte) ([]byte, BuildResult) {
	t.Helper()
	var out bytes.Buffer
	res, err := Build(context.Background(), &out, bytes.NewReader(tarball), BuildOptions{})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return out.Bytes(), res
}

// readFile reads all of e through its chunks, as the store does.
func readFile(t testing.TB, blob []byte, e *index.Entry) []byte {
	t.Helper()
	var out []byte
	for _, c := range e.Chunks {
		dst := make([]byte, c.Size)
		var comp []byte
		if !c.Zero {
			comp = blob[c.CompressedOffset:c.CompressedEnd]
		}
		if err := DecodeChunk(dst, comp, c); err != nil {
			t.Fatalf("%s: %v", e.Name, err)
		}
		out = append(out, dst...)
	}
	return out
}

var testEncoders = sync.Pool{New: func() any {
	zw, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	return zw
}}

// compress returns data as one zstd frame.
func compress(data []byte) []byte {
	zw := testEncoders.Get().(*zstd.Encoder)
	defer testEncoders.Put(zw)
	return zw.EncodeAll(data, nil)
}

// handBlob assembles zstd:chunked blobs by hand, for TOCs no writer would
// produce.
type handBlob struct{ buf bytes.Buffer }

// frame appends data as one zstd frame and returns its blob offset.
func (w *handBlob) frame(data []byte) int64 {
	off := int64(w.buf.Len())
	w.buf.Write(compress(data))
	return off
}

// finish appends the TOC in a skippable frame, an empty tar-split frame
// and the footer. It returns the blob, the TOC digest and the annotations
// a writer would give.
func (w *handBlob) finish(tocJSON []byte) ([]byte, digest.Digest, map[string]string) {
	ctoc := compress(tocJSON)
	tocPos := Position{Offset: int64(w.buf.Len()) + skippableHeaderSize, Length: int64(len(ctoc)), UncompressedLength: int64(len(tocJSON))}
	w.skippable(ctoc)
	ts := compress([]byte("{}"))
	tsPos := Position{Offset: int64(w.buf.Len()) + skippableHeaderSize, Length: int64(len(ts)), UncompressedLength: 2}
	w.skippable(ts)
	b := AppendFooter(w.buf.Bytes(), Footer{TOC: tocPos, ManifestType: ManifestTypeCRFS, TarSplit: tsPos})
	d := digest.FromBytes(ctoc)
	return b, d, map[string]string{
		ManifestChecksumAnnotation: d.String(),
		ManifestPositionAnnotation: fmt.Sprintf("%d:%d:%d:1", tocPos.Offset, tocPos.Length, tocPos.UncompressedLength),
	}
}

func (w *handBlob) skippable(data []byte) {
	w.buf.Write(skippableMagic[:])
	w.buf.Write([]byte{byte(len(data)), byte(len(data) >> 8), byte(len(data) >> 16), byte(len(data) >> 24)})
	w.buf.Write(data)
}
