// SPDX-License-Identifier: Apache-2.0

package zstdchunked

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store/index"
)

// sampleFiles is a layer with every kind of entry the format has,
// including a file cut into several chunks and a run of zeros.
func sampleFiles() []tarFile {
	rnd := rand.New(rand.NewPCG(1, 2))
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(rnd.Uint32())
	}
	sparse := append(append([]byte("head"), make([]byte, 300<<10)...), []byte("tail")...)
	return []tarFile{
		{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		{name: "etc/hostname", body: []byte("zstd\n")},
		{name: "etc/empty"},
		{name: "bin/big", body: big, mode: 0o755},
		{name: "bin/sparse", body: sparse},
		{name: "bin/link", typ: tar.TypeSymlink, link: "big"},
		{name: "bin/hard", typ: tar.TypeLink, link: "bin/big"},
		{name: "etc/.wh.gone", body: nil},
		{name: "etc/attr", body: []byte("x"), xattrs: map[string]string{"user.k": "v\x00w"}},
		{name: "dev/null", typ: tar.TypeChar, mode: 0o666},
	}
}

func TestBuildOpenRoundTrip(t *testing.T) {
	files := sampleFiles()
	tarball := makeTar(t, files...)
	blob, res := buildBlob(t, tarball)
	if res.DiffID != digest.FromBytes(tarball) || res.UncompressedSize != int64(len(tarball)) {
		t.Errorf("Build DiffID, size = %s, %d, want %s, %d", res.DiffID, res.UncompressedSize, digest.FromBytes(tarball), len(tarball))
	}
	if res.Digest != digest.FromBytes(blob) || res.Size != int64(len(blob)) {
		t.Errorf("Build Digest, Size = %s, %d; the blob is %s, %d", res.Digest, res.Size, digest.FromBytes(blob), len(blob))
	}
	if res.Annotations[ManifestChecksumAnnotation] != res.TOCDigest.String() || res.Annotations[ManifestPositionAnnotation] == "" ||
		res.Annotations[TarSplitPositionAnnotation] == "" {
		t.Errorf("Build annotations = %v", res.Annotations)
	}
	tests := []struct {
		name        string
		annotations map[string]string
		fromFooter  bool
	}{
		{"annotations", res.Annotations, false},
		{"footer", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Open(context.Background(), bytes.NewReader(blob), int64(len(blob)), OpenOptions{TOCDigest: res.TOCDigest, Annotations: tt.annotations, UncompressedSize: true})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if b.FromFooter != tt.fromFooter {
				t.Errorf("FromFooter = %v, want %v", b.FromFooter, tt.fromFooter)
			}
			if b.UncompressedSize != int64(len(tarball)) {
				t.Errorf("UncompressedSize = %d, want the tar's %d", b.UncompressedSize, len(tarball))
			}
			if b, _ := Open(context.Background(), bytes.NewReader(blob), int64(len(blob)), OpenOptions{TOCDigest: res.TOCDigest, Annotations: tt.annotations}); b.UncompressedSize != -1 {
				t.Errorf("UncompressedSize not asked for = %d, want -1", b.UncompressedSize)
			}
			checkFiles(t, blob, b.Index, files)
		})
	}
}

func checkFiles(t *testing.T, blob []byte, ix *index.Index, files []tarFile) {
	t.Helper()
	var sawZero, sawMulti bool
	for _, f := range files {
		name := strings.TrimSuffix(f.name, "/")
		e, ok := ix.Lookup(name)
		if !ok {
			t.Errorf("Lookup(%q) not found", name)
			continue
		}
		switch f.typ {
		case tar.TypeSymlink:
			if e.Type != index.TypeSymlink || e.LinkName != f.link {
				t.Errorf("%s: %v -> %q, want symlink to %q", name, e.Type, e.LinkName, f.link)
			}
		case tar.TypeLink:
			if target, _ := ix.Lookup(f.link); target != e || e.NumLink != 2 {
				t.Errorf("%s: hard link resolves to %v (nlink %d), want %q", name, e.Name, e.NumLink, f.link)
			}
		case 0, tar.TypeReg:
			if got := readFile(t, blob, e); !bytes.Equal(got, f.body) {
				t.Errorf("%s: read %d bytes, want %d equal to the original", name, len(got), len(f.body))
			}
			if len(f.body) > 0 && e.Digest != digest.FromBytes(f.body) {
				t.Errorf("%s: digest %s, want %s", name, e.Digest, digest.FromBytes(f.body))
			}
			for _, c := range e.Chunks {
				sawZero = sawZero || c.Zero
			}
			sawMulti = sawMulti || len(e.Chunks) > 2
			for k, v := range f.xattrs {
				if string(e.Xattrs[k]) != v {
					t.Errorf("%s: xattr %s = %q, want %q", name, k, e.Xattrs[k], v)
				}
			}
		}
	}
	if !sawZero || !sawMulti {
		t.Errorf("sample layer has zero chunks: %v, a file of many chunks: %v; want both", sawZero, sawMulti)
	}
}

func TestOpenErrors(t *testing.T) {
	blob, res := buildBlob(t, makeTar(t, sampleFiles()...))
	pos, err := ParsePosition(res.Annotations[ManifestPositionAnnotation])
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) map[string]string { return map[string]string{ManifestPositionAnnotation: s} }
	posStr := func(p Position) string { return fmt.Sprintf("%d:%d:%d:1", p.Offset, p.Length, p.UncompressedLength) }
	noFooter := bytes.Clone(blob)
	noFooter[len(noFooter)-1] ^= 1
	tests := []struct {
		name    string
		blob    []byte
		opts    OpenOptions
		wantErr error
	}{
		{"wrong TOC digest", blob, OpenOptions{TOCDigest: digest.FromString("x"), Annotations: res.Annotations}, ErrVerify},
		{"wrong TOC digest via footer", blob, OpenOptions{TOCDigest: digest.FromString("x")}, ErrVerify},
		{"no footer, no annotation", noFooter, OpenOptions{TOCDigest: res.TOCDigest}, ErrNotZstdChunked},
		{"position past the end", blob, OpenOptions{TOCDigest: res.TOCDigest, Annotations: at(posStr(Position{int64(len(blob)), 10, 10}))}, ErrNotZstdChunked},
		{"position overflowing", blob, OpenOptions{TOCDigest: res.TOCDigest, Annotations: at(fmt.Sprintf("%d:100:100:1", int64(1)<<62))}, ErrNotZstdChunked},
		{"position type 2", blob, OpenOptions{TOCDigest: res.TOCDigest, Annotations: at("10:10:10:2")}, ErrNotZstdChunked},
		{"position garbage", blob, OpenOptions{TOCDigest: res.TOCDigest, Annotations: at("-1:10:10:1")}, ErrNotZstdChunked},
		{"position shifted", blob, OpenOptions{TOCDigest: res.TOCDigest, Annotations: at(posStr(Position{pos.Offset - 1, pos.Length, pos.UncompressedLength}))}, ErrVerify},
		{"uncompressed length lies", blob, OpenOptions{TOCDigest: res.TOCDigest, Annotations: at(posStr(Position{pos.Offset, pos.Length, pos.UncompressedLength - 1}))}, ErrNotZstdChunked},
		{"TOC over the limit", blob, OpenOptions{TOCDigest: res.TOCDigest, Annotations: res.Annotations, MaxTOCSize: pos.UncompressedLength - 1}, ErrTooLarge},
		{"tiny blob", []byte("GNUlInUx"), OpenOptions{TOCDigest: res.TOCDigest}, ErrNotZstdChunked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(context.Background(), bytes.NewReader(tt.blob), int64(len(tt.blob)), tt.opts)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Open = %v, want %v", err, tt.wantErr)
			}
		})
	}
	if _, err := Open(context.Background(), bytes.NewReader(blob), int64(len(blob)), OpenOptions{}); err == nil {
		t.Error("Open without a TOC digest succeeded")
	}
}

// tocDoc renders a TOC document with the given entries.
func tocDoc(entries ...string) []byte {
	return []byte(`{"version":1,"entries":[` + strings.Join(entries, ",") + `]}`)
}

func TestOpenHostileTOC(t *testing.T) {
	data := []byte("hello, world")
	d := digest.FromBytes(data).String()
	tests := []struct {
		name    string
		toc     func(off, end int64) []byte
		wantErr error
	}{
		{"valid", func(off, end int64) []byte {
			return tocDoc(fmt.Sprintf(`{"type":"reg","name":"a","size":12,"digest":%q,"offset":%d,"endOffset":%d}`, d, off, end))
		}, nil},
		{"no digest", func(off, end int64) []byte {
			return tocDoc(fmt.Sprintf(`{"type":"reg","name":"a","size":12,"offset":%d,"endOffset":%d}`, off, end))
		}, index.ErrInvalid},
		{"name escapes", func(off, end int64) []byte {
			return tocDoc(fmt.Sprintf(`{"type":"reg","name":"../a","size":12,"digest":%q,"offset":%d,"endOffset":%d}`, d, off, end))
		}, index.ErrInvalid},
		{"range into the TOC", func(off, end int64) []byte {
			return tocDoc(fmt.Sprintf(`{"type":"reg","name":"a","size":12,"digest":%q,"offset":%d,"endOffset":%d}`, d, off, end+100))
		}, index.ErrInvalid},
		{"empty range", func(off, end int64) []byte {
			return tocDoc(fmt.Sprintf(`{"type":"reg","name":"a","size":12,"digest":%q,"offset":%d,"endOffset":%d}`, d, off, off))
		}, index.ErrInvalid},
		{"chunk without digest", func(off, end int64) []byte {
			return tocDoc(fmt.Sprintf(`{"type":"reg","name":"a","size":12,"offset":%d,"endOffset":%d,"chunkSize":6,"chunkDigest":%q}`, off, end, d),
				fmt.Sprintf(`{"type":"chunk","name":"a","offset":%d,"chunkOffset":6,"chunkSize":6}`, off))
		}, index.ErrInvalid},
		{"unknown chunk type", func(off, end int64) []byte {
			return tocDoc(fmt.Sprintf(`{"type":"reg","name":"a","size":12,"offset":%d,"endOffset":%d,"chunkSize":12,"chunkDigest":%q,"chunkType":"holes"}`, off, end, d))
		}, index.ErrInvalid},
		{"chunk after a dir", func(off, end int64) []byte {
			return tocDoc(`{"type":"dir","name":"a"}`, `{"type":"chunk","name":"a","chunkOffset":0,"chunkSize":1}`)
		}, index.ErrInvalid},
		{"chunks leave a gap", func(off, end int64) []byte {
			return tocDoc(fmt.Sprintf(`{"type":"reg","name":"a","size":12,"offset":%d,"endOffset":%d,"chunkSize":4,"chunkDigest":%q}`, off, end, d),
				fmt.Sprintf(`{"type":"chunk","name":"a","offset":%d,"chunkOffset":6,"chunkSize":6,"chunkDigest":%q}`, off, d))
		}, index.ErrInvalid},
		{"huge zero chunk", func(off, end int64) []byte {
			return tocDoc(fmt.Sprintf(`{"type":"reg","name":"a","size":%d,"offset":%d,"endOffset":%d,"chunkSize":%d,"chunkType":"zeros","chunkDigest":%q}`, int64(1)<<60, off, end, int64(1)<<60, d))
		}, ErrTooLarge},
		{"zero chunk overflowing", func(off, end int64) []byte {
			return tocDoc(fmt.Sprintf(`{"type":"reg","name":"a","size":12,"offset":%d,"endOffset":%d,"chunkSize":6,"chunkType":"zeros"}`, off, end),
				fmt.Sprintf(`{"type":"chunk","name":"a","offset":%d,"chunkOffset":6,"chunkSize":9223372036854775807,"chunkType":"zeros"}`, off))
		}, index.ErrInvalid},
		{"xattr not base64", func(off, end int64) []byte {
			return tocDoc(`{"type":"dir","name":"a","xattrs":{"user.x":"!!"}}`)
		}, index.ErrInvalid},
		{"xattr of a hard link not base64", func(off, end int64) []byte {
			return tocDoc(`{"type":"dir","name":"a"}`, `{"type":"hardlink","name":"h","linkName":"a","xattrs":{"user.x":"!!"}}`)
		}, index.ErrInvalid},
		{"xattr too large", func(off, end int64) []byte {
			return tocDoc(fmt.Sprintf(`{"type":"dir","name":"a","xattrs":{"user.x":%q}}`, strings.Repeat("A", 90000)))
		}, index.ErrInvalid},
		// containers/storage copies every tar header's size; tar ignores
		// it on header-only entries, and so does the index.
		{"size on a directory", func(off, end int64) []byte {
			return tocDoc(`{"type":"dir","name":"d","size":5}`, `{"type":"symlink","name":"s","linkName":"a","size":1}`,
				fmt.Sprintf(`{"type":"reg","name":"a","size":12,"digest":%q,"offset":%d,"endOffset":%d}`, d, off, end))
		}, nil},
		{"chunk names another file", func(off, end int64) []byte {
			return tocDoc(fmt.Sprintf(`{"type":"reg","name":"a","size":12,"offset":%d,"endOffset":%d,"chunkSize":6,"chunkDigest":%q}`, off, end, d),
				fmt.Sprintf(`{"type":"chunk","name":"b","offset":%d,"chunkOffset":6,"chunkSize":6,"chunkDigest":%q}`, off, d))
		}, index.ErrInvalid},
		{"bad modtime", func(off, end int64) []byte { return tocDoc(`{"type":"dir","name":"a","modtime":"yesterday"}`) }, index.ErrInvalid},
		{"mode too large", func(off, end int64) []byte { return tocDoc(`{"type":"dir","name":"a","mode":4294967296}`) }, index.ErrInvalid},
		{"bad file digest", func(off, end int64) []byte {
			return tocDoc(fmt.Sprintf(`{"type":"reg","name":"a","size":12,"digest":"sha256:zz","offset":%d,"endOffset":%d}`, off, end))
		}, index.ErrInvalid},
		{"version 2", func(off, end int64) []byte { return []byte(`{"version":2,"entries":[]}`) }, index.ErrInvalid},
		{"no entries", func(off, end int64) []byte { return []byte(`{"version":1}`) }, index.ErrInvalid},
		{"two entries arrays", func(off, end int64) []byte { return []byte(`{"version":1,"entries":[],"entries":[]}`) }, index.ErrInvalid},
		{"trailing data", func(off, end int64) []byte { return append(tocDoc(), " {}"...) }, index.ErrInvalid},
		{"not an object", func(off, end int64) []byte { return []byte(`[1]`) }, index.ErrInvalid},
		{"float size", func(off, end int64) []byte { return tocDoc(`{"type":"reg","name":"a","size":1.5}`) }, index.ErrInvalid},
		{"unknown type", func(off, end int64) []byte { return tocDoc(`{"type":"socket","name":"a"}`) }, index.ErrInvalid},
		{"hard link loop", func(off, end int64) []byte {
			return tocDoc(`{"type":"hardlink","name":"a","linkName":"b"}`, `{"type":"hardlink","name":"b","linkName":"a"}`)
		}, index.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w handBlob
			w.frame([]byte("tar header"))
			off := w.frame(data)
			end := int64(w.buf.Len())
			blob, td, ann := w.finish(tt.toc(off, end))
			b, err := Open(context.Background(), bytes.NewReader(blob), int64(len(blob)), OpenOptions{TOCDigest: td, Annotations: ann})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Open = %v, want %v", err, tt.wantErr)
			}
			if err == nil {
				e, _ := b.Index.Lookup("a")
				if got := readFile(t, blob, e); !bytes.Equal(got, data) {
					t.Errorf("read %q, want %q", got, data)
				}
			}
		})
	}
}

func TestOpenTarSplit(t *testing.T) {
	tarball := makeTar(t, sampleFiles()...)
	blob, res := buildBlob(t, tarball)
	ts, err := ParseTarSplitPosition(res.Annotations[TarSplitPositionAnnotation])
	if err != nil {
		t.Fatal(err)
	}
	corrupt := bytes.Clone(blob)
	corrupt[ts.Offset+ts.Length/2] ^= 1
	with := func(key, val string) map[string]string {
		a := maps.Clone(res.Annotations)
		if val == "" {
			delete(a, key)
		} else {
			a[key] = val
		}
		return a
	}
	tests := []struct {
		name     string
		blob     []byte
		ann      map[string]string
		wantSize int64
		wantErr  error
	}{
		{"annotations", blob, res.Annotations, int64(len(tarball)), nil},
		{"no tar-split position", blob, with(TarSplitPositionAnnotation, ""), -1, nil},
		{"garbage tar-split position", blob, with(TarSplitPositionAnnotation, "x"), -1, nil},
		{"tar-split before the TOC", blob, with(TarSplitPositionAnnotation, "10:20:30"), -1, nil},
		{"tar-split past the end", blob, with(TarSplitPositionAnnotation, fmt.Sprintf("%d:20:30", len(blob))), -1, nil},
		{"tar-split length lies", blob, with(TarSplitPositionAnnotation, fmt.Sprintf("%d:20:30", ts.Offset)), 0, ErrVerify},
		{"tar-split over the limit", blob, with(TarSplitPositionAnnotation, fmt.Sprintf("%d:%d:%d", ts.Offset, ts.Length, int64(1)<<40)), -1, nil},
		{"corrupt tar-split", corrupt, res.Annotations, 0, ErrVerify},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Open(context.Background(), bytes.NewReader(tt.blob), int64(len(tt.blob)), OpenOptions{TOCDigest: res.TOCDigest, Annotations: tt.ann, UncompressedSize: true})
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Open = %v, want %v", err, tt.wantErr)
			}
			if err == nil && b.UncompressedSize != tt.wantSize {
				t.Errorf("UncompressedSize = %d, want %d", b.UncompressedSize, tt.wantSize)
			}
		})
	}
}
