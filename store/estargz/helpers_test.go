// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"sync"
	"testing"

	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
)

// rdBlobWriter assembles eStargz blobs by hand, for TOCs no writer would
// produce. Members are appended one by one; finish adds the TOC and the
// footer.
type rdBlobWriter struct {
	buf bytes.Buffer
}

// member appends data as one gzip member and returns its blob offset.
func (w *rdBlobWriter) member(t testing.TB, data []byte) int64 {
	t.Helper()
	off := int64(w.buf.Len())
	zw := rdGzipWriters.Get().(*gzip.Writer)
	defer rdGzipWriters.Put(zw)
	zw.Reset(&w.buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return off
}

// rdGzipWriters keeps fuzz targets fast: a new gzip writer is costly.
var rdGzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return zw
}}

// finish appends the TOC member holding tocJSON and the footer, and
// returns the blob and the TOC's digest.
func (w *rdBlobWriter) finish(t testing.TB, tocJSON []byte) ([]byte, digest.Digest) {
	t.Helper()
	off := int64(w.buf.Len())
	w.member(t, rdTocTar(t, TOCTarName, tocJSON))
	return AppendFooter(w.buf.Bytes(), off), digest.FromBytes(tocJSON)
}

// rdTocTar returns a tar holding one regular file.
func rdTocTar(t testing.TB, name string, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// rdTocBlob builds a blob with no payload members around a TOC given as
// entries (marshalled to JSON) and returns it with its TOC digest.
func rdTocBlob(t testing.TB, entries ...map[string]any) ([]byte, digest.Digest) {
	t.Helper()
	var w rdBlobWriter
	w.member(t, nil) // a real blob never has its TOC at offset 0
	return w.finish(t, rdMustJSON(t, map[string]any{"version": 1, "entries": entries}))
}

func rdMustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rdOpenBytes opens an in-memory blob.
func rdOpenBytes(blob []byte, d digest.Digest) (*Blob, error) {
	return Open(context.Background(), bytes.NewReader(blob), int64(len(blob)), OpenOptions{TOCDigest: d})
}

// rdCountingReaderAt counts ReadAt calls.
type rdCountingReaderAt struct {
	r     io.ReaderAt
	calls int
}

func (c *rdCountingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	c.calls++
	return c.r.ReadAt(p, off)
}

// file is one tar entry of a test layer.
type rdFile struct {
	hdr  tar.Header
	data []byte
}

func rdReg(name string, data string) rdFile {
	return rdFile{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data))}, data: []byte(data)}
}

func rdDir(name string) rdFile {
	return rdFile{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

// rdMakeTar writes files as a tar archive.
func rdMakeTar(t testing.TB, files []rdFile) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		h := f.hdr
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %q: %v", h.Name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
