// SPDX-License-Identifier: Apache-2.0

package store

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/types"

	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/store/zstdchunked"
)

func TestNewLayerEntryZstdChunked(t *testing.T) {
	ref, err := refspec.Parse("example.com/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	blob, toc, esgzTOC, diff := digest.FromString("blob"), digest.FromString("toc"), digest.FromString("esgz"), digest.FromString("diff")
	zstd := func(edit func(*types.BlobInfo)) types.BlobInfo {
		bi := types.BlobInfo{Digest: blob, Size: 1000, MediaType: ocispec.MediaTypeImageLayerZstd, Annotations: map[string]string{
			zstdchunked.ManifestChecksumAnnotation: toc.String(),
			zstdchunked.ManifestPositionAnnotation: "10:20:30:1",
		}}
		if edit != nil {
			edit(&bi)
		}
		return bi
	}
	tests := []struct {
		name       string
		bi         types.BlobInfo
		diffID     digest.Digest
		wantWhy    string // "" = lazy
		wantFormat Format
		wantTOC    digest.Digest
	}{
		{"zstd:chunked", zstd(nil), diff, "", FormatZstdChunked, toc},
		{"no position annotation (footer)", zstd(func(bi *types.BlobInfo) {
			delete(bi.Annotations, zstdchunked.ManifestPositionAnnotation)
		}), diff, "", FormatZstdChunked, toc},
		{"other zstd media type", zstd(func(bi *types.BlobInfo) { bi.MediaType = "application/vnd.example.tar+zstd" }), diff, "", FormatZstdChunked, toc},
		{"gzip media type", zstd(func(bi *types.BlobInfo) { bi.MediaType = ocispec.MediaTypeImageLayerGzip }), diff, "not zstd", FormatZstdChunked, toc},
		{"encrypted", zstd(func(bi *types.BlobInfo) { bi.MediaType = "application/vnd.oci.image.layer.v1.tar+zstd+encrypted" }), diff, "not zstd", FormatZstdChunked, toc},
		{"foreign", zstd(func(bi *types.BlobInfo) { bi.URLs = []string{"https://example.com/l"} }), diff, "foreign", FormatZstdChunked, toc},
		{"no size", zstd(func(bi *types.BlobInfo) { bi.Size = 0 }), diff, "size", FormatZstdChunked, toc},
		{"no diff_id", zstd(nil), "", "diff_id", FormatZstdChunked, toc},
		{"invalid checksum", zstd(func(bi *types.BlobInfo) {
			bi.Annotations[zstdchunked.ManifestChecksumAnnotation] = "sha256:xyz"
		}), diff, "invalid", FormatEStargz, ""},
		{"plain zstd", zstd(func(bi *types.BlobInfo) { bi.Annotations = nil }), diff, "not eStargz", FormatEStargz, ""},
		{"eStargz annotation wins", zstd(func(bi *types.BlobInfo) {
			bi.Annotations[annotationTOCDigest] = esgzTOC.String()
		}), diff, "not gzip", FormatEStargz, esgzTOC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newLayerEntry(ref, tt.bi, tt.diffID)
			switch {
			case tt.wantWhy == "" && e.notLazy != nil:
				t.Errorf("notLazy = %v, want lazy", e.notLazy)
			case tt.wantWhy != "" && (e.notLazy == nil || !strings.Contains(e.notLazy.Error(), tt.wantWhy)):
				t.Errorf("notLazy = %v, want one mentioning %q", e.notLazy, tt.wantWhy)
			}
			if e.desc.Format != tt.wantFormat || e.desc.TOCDigest != tt.wantTOC {
				t.Errorf("Format, TOCDigest = %q, %q, want %q, %q", e.desc.Format, e.desc.TOCDigest, tt.wantFormat, tt.wantTOC)
			}
			if !e.names(blob) {
				t.Errorf("names(blob digest) = false")
			}
			if tt.wantTOC != "" && !e.names(tt.wantTOC) {
				t.Errorf("names(TOC digest) = false")
			}
		})
	}
}

// zstdLayer builds a zstd:chunked blob of files with the compressor Podman
// uses, and the descriptor resolve would make for it.
func zstdLayer(t *testing.T, files map[string][]byte, names ...string) ([]byte, LayerDesc, int64) {
	t.Helper()
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for _, name := range names {
		if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(files[name]))}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(files[name]); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := zstdchunked.Build(t.Context(), &out, &tb, zstdchunked.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := refspec.Parse("example.com/app:v1")
	e := newLayerEntry(ref, types.BlobInfo{Digest: res.Digest, Size: res.Size, MediaType: zstdchunked.MediaType, Annotations: res.Annotations}, res.DiffID)
	if e.notLazy != nil {
		t.Fatalf("newLayerEntry: %v", e.notLazy)
	}
	return out.Bytes(), e.desc, res.UncompressedSize
}

func TestOpenLayerZstdChunked(t *testing.T) {
	big := make([]byte, 512<<10)
	for i := range big {
		big[i] = byte(i*7 + i>>9)
	}
	files := map[string][]byte{
		"small":  []byte("hello, zstd:chunked\n"),
		"big":    big,
		"sparse": append(append([]byte("head"), make([]byte, 256<<10)...), "tail"...),
	}
	data, desc, tarSize := zstdLayer(t, files, "small", "big", "sparse")
	blob := &countingBlob{b: data}
	l, err := OpenLayer(t.Context(), blob, desc, LayerOptions{})
	if err != nil {
		t.Fatalf("OpenLayer: %v", err)
	}
	defer l.Close()
	for name, want := range files {
		e, ok := l.Index().Lookup(name)
		if !ok {
			t.Fatalf("Lookup(%q) not found", name)
		}
		got := make([]byte, e.Size)
		if n, err := l.ReadAt(t.Context(), e, got, 0); n != len(got) || (err != nil && err != io.EOF) {
			t.Fatalf("ReadAt(%s) = %d, %v", name, n, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("ReadAt(%s): content differs from the original", name)
		}
	}

	// A read inside the run of zeros fetches nothing.
	sparse, _ := l.Index().Lookup("sparse")
	zc, ok := sparse.ChunkAt(128 << 10)
	if !ok || !zc.Zero {
		t.Fatalf("chunk at 128 KiB of sparse = %+v, want a Zero chunk", zc)
	}
	before := blob.reads.Load()
	p := make([]byte, 4096)
	if _, err := l.ReadAt(t.Context(), sparse, p, zc.Offset); err != nil || !bytes.Equal(p, make([]byte, len(p))) {
		t.Errorf("ReadAt in the zeros = %v, want zeros", err)
	}
	if n := blob.reads.Load() - before; n != 0 {
		t.Errorf("reading zeros made %d blob reads, want 0", n)
	}

	for _, name := range []digest.Digest{desc.Digest, desc.TOCDigest} {
		b, err := l.Info(name)
		if err != nil {
			t.Fatal(err)
		}
		var info layerInfo
		if err := json.Unmarshal(b, &info); err != nil {
			t.Fatal(err)
		}
		if info.Compression != compressionZstd {
			t.Errorf("info(%s) compression = %d, want %d", name, info.Compression, compressionZstd)
		}
		if info.UncompressedSize != tarSize {
			t.Errorf("info(%s) diff-size = %d, want the tar's %d", name, info.UncompressedSize, tarSize)
		}
	}
}

func TestOpenLayerZstdChunkedCorrupt(t *testing.T) {
	files := map[string][]byte{"f": bytes.Repeat([]byte("content "), 4096)}
	data, desc, _ := zstdLayer(t, files, "f")
	probe, err := OpenLayer(t.Context(), &countingBlob{b: data}, desc, LayerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := probe.Index().Lookup("f")
	c := e.Chunks[0]
	probe.Close()

	bad := bytes.Clone(data)
	bad[(c.CompressedOffset+c.CompressedEnd)/2] ^= 0x55
	l, err := OpenLayer(t.Context(), &countingBlob{b: bad}, desc, LayerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	e, _ = l.Index().Lookup("f")
	if _, err := l.ReadAt(t.Context(), e, make([]byte, 100), 0); !errors.Is(err, ErrVerify) {
		t.Errorf("ReadAt of a corrupt chunk = %v, want ErrVerify", err)
	}

	wrong := desc
	wrong.TOCDigest = digest.FromString("other")
	if _, err := OpenLayer(t.Context(), &countingBlob{b: data}, wrong, LayerOptions{}); !errors.Is(err, ErrVerify) {
		t.Errorf("OpenLayer with the wrong TOC digest = %v, want ErrVerify", err)
	}
	noTOC := desc
	noTOC.Annotations = nil
	trunc := data[:len(data)-10]
	noTOC.Size = int64(len(trunc))
	if _, err := OpenLayer(t.Context(), &countingBlob{b: trunc}, noTOC, LayerOptions{}); !errors.Is(err, ErrNotLazy) {
		t.Errorf("OpenLayer of a blob with neither position nor footer = %v, want ErrNotLazy", err)
	}
}
