// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	esgz "github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Layer annotations of eStargz images.
const (
	AnnotationTOCDigest        = "containerd.io/snapshot/stargz/toc.digest"
	AnnotationUncompressedSize = "io.containers.estargz.uncompressed-size"
)

// File is one tar entry. A Name ending in "/" is a directory; Link makes
// a symlink.
type File struct {
	Name string
	Data string
	Mode int64 // 0 means 0644 (files, symlinks) or 0755 (directories)
	Link string
}

// Tar returns an uncompressed tar of files, in order.
func Tar(t testing.TB, files ...File) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	for _, f := range files {
		h := &tar.Header{Name: f.Name, Mode: f.Mode, ModTime: mtime, Format: tar.FormatPAX}
		switch {
		case strings.HasSuffix(f.Name, "/"):
			h.Typeflag = tar.TypeDir
		case f.Link != "":
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.Link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, f.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Layer is a layer blob with its descriptor as an OCI manifest lists it.
type Layer struct {
	Blob      []byte
	Desc      ocispec.Descriptor // digest, size, media type, annotations
	DiffID    digest.Digest
	TOCDigest digest.Digest // "" for a plain gzip layer
}

// ESGZOptions tune ESGZLayer.
type ESGZOptions struct {
	ChunkSize   int      // 0: the library's default (4 MiB)
	Prioritized []string // files to place first, before .prefetch.landmark
}

// ESGZLayer converts a tar to an eStargz layer with the reference library
// (github.com/containerd/stargz-snapshotter/estargz) and annotates its
// descriptor as ctr-remote and Podman do.
func ESGZLayer(t testing.TB, tarball []byte, o ESGZOptions) Layer {
	t.Helper()
	opts := []esgz.Option{esgz.WithCompressionLevel(gzip.BestSpeed)}
	if o.ChunkSize > 0 {
		opts = append(opts, esgz.WithChunkSize(o.ChunkSize))
	}
	if len(o.Prioritized) > 0 {
		opts = append(opts, esgz.WithPrioritizedFiles(o.Prioritized))
	}
	b, err := esgz.Build(io.NewSectionReader(bytes.NewReader(tarball), 0, int64(len(tarball))), opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	blob, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	usize, err := b.UncompressedSize()
	if err != nil {
		t.Fatal(err)
	}
	l := Layer{Blob: blob, DiffID: b.DiffID(), TOCDigest: b.TOCDigest()}
	l.Desc = ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayerGzip,
		Digest:    digest.FromBytes(blob),
		Size:      int64(len(blob)),
		Annotations: map[string]string{
			AnnotationTOCDigest:        l.TOCDigest.String(),
			AnnotationUncompressedSize: strconv.FormatInt(usize, 10),
		},
	}
	return l
}

// GzipLayer gzips a tar into a plain (not eStargz) layer.
func GzipLayer(t testing.TB, tarball []byte) Layer {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(tarball); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	blob := buf.Bytes()
	return Layer{
		Blob:   blob,
		DiffID: digest.FromBytes(tarball),
		Desc: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageLayerGzip,
			Digest:    digest.FromBytes(blob),
			Size:      int64(len(blob)),
		},
	}
}

// Image is a single-platform OCI image: manifest, config and layers.
type Image struct {
	Layers   []Layer
	Config   []byte
	Manifest []byte
	Desc     ocispec.Descriptor // of the manifest, with the platform
}

// NewImage builds the OCI manifest and config of layers for platform.
func NewImage(t testing.TB, platform ocispec.Platform, layers ...Layer) *Image {
	t.Helper()
	cfg := ocispec.Image{Platform: platform, RootFS: ocispec.RootFS{Type: "layers"}}
	for _, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID)
	}
	img := &Image{Layers: layers, Config: mustJSON(t, cfg)}
	m := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageConfig,
			Digest:    digest.FromBytes(img.Config),
			Size:      int64(len(img.Config)),
		},
	}
	for _, l := range layers {
		m.Layers = append(m.Layers, l.Desc)
	}
	img.Manifest = mustJSON(t, m)
	img.Desc = ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest,
		Digest:    digest.FromBytes(img.Manifest),
		Size:      int64(len(img.Manifest)),
		Platform:  &platform,
	}
	return img
}

// Push uploads the image's blobs and manifest as repo:tag (tag may also
// be a digest) and returns the manifest digest.
func (r *Registry) Push(t testing.TB, repo, tag string, img *Image) digest.Digest {
	t.Helper()
	r.pushBlob(t, repo, img.Config)
	for _, l := range img.Layers {
		r.pushBlob(t, repo, l.Blob)
	}
	r.put(t, http.MethodPut, "/v2/"+repo+"/manifests/"+tag, ocispec.MediaTypeImageManifest, img.Manifest)
	return img.Desc.Digest
}

// PushIndex uploads the images by digest and an OCI index of them as
// repo:tag, and returns the index digest.
func (r *Registry) PushIndex(t testing.TB, repo, tag string, imgs ...*Image) digest.Digest {
	t.Helper()
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	for _, img := range imgs {
		r.Push(t, repo, img.Desc.Digest.String(), img)
		idx.Manifests = append(idx.Manifests, img.Desc)
	}
	raw := mustJSON(t, idx)
	r.put(t, http.MethodPut, "/v2/"+repo+"/manifests/"+tag, ocispec.MediaTypeImageIndex, raw)
	return digest.FromBytes(raw)
}

func (r *Registry) pushBlob(t testing.TB, repo string, blob []byte) {
	t.Helper()
	r.put(t, http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+digest.FromBytes(blob).String(), "", blob)
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
