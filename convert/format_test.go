// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/stargz-store/stargz-store/store/zstdchunked"
)

func TestCheckFormat(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"default", Options{}, ""},
		{"estargz", Options{Format: FormatEStargz}, ""},
		{"zstd:chunked", Options{Format: FormatZstdChunked}, ""},
		{"unknown", Options{Format: "zstd"}, "unknown layer format"},
		{"zstd:chunked external TOC", Options{Format: FormatZstdChunked, ExternalTOC: true}, "external TOC"},
		{"zstd:chunked prioritized", Options{Format: FormatZstdChunked, PrioritizedFiles: []string{"a"}}, "prioritized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.checkFormat()
			if (tt.wantErr == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("checkFormat() = %v, want an error mentioning %q", err, tt.wantErr)
			}
		})
	}
}

// TestImageZstdChunked converts gzip, zstd and uncompressed layers, and an eStargz image, to
// zstd:chunked: every layer is a zstd tar with the compressor's annotations, opens with the
// store's reader, and decompresses to the source tar (eStargz sources lose their TOC entry).
func TestImageZstdChunked(t *testing.T) {
	reg := newTestRegistry(t, nil)
	layers := sampleLayers(t)
	reg.pushImage(t, "src", "v1", ocispec.MediaTypeImageManifest, layers)
	opts := testOptions(t)
	if _, err := Image(t.Context(), reg.host+"/src:v1", reg.host+"/esgz:v1", opts); err != nil {
		t.Fatalf("Image(estargz) error: %v", err)
	}
	opts.Format = FormatZstdChunked
	for _, src := range []string{"src", "esgz"} {
		t.Run(src, func(t *testing.T) {
			d, err := Image(t.Context(), reg.host+"/"+src+":v1", reg.host+"/zstd-"+src+":v1", opts)
			if err != nil {
				t.Fatalf("Image(%s) error: %v", src, err)
			}
			raw, ok := reg.get(t, "zstd-"+src+"/manifests/v1")
			if !ok || digest.FromBytes(raw) != d {
				t.Fatalf("manifest %s not in the registry", d)
			}
			var m ocispec.Manifest
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			cfgRaw, _ := reg.get(t, "zstd-"+src+"/blobs/"+m.Config.Digest.String())
			var cfg ocispec.Image
			if err := json.Unmarshal(cfgRaw, &cfg); err != nil || len(cfg.RootFS.DiffIDs) != len(layers) || len(m.Layers) != len(layers) {
				t.Fatalf("config %s: %v", cfgRaw, err)
			}
			for i, l := range m.Layers {
				checkZstdLayer(t, reg, "zstd-"+src, l, cfg.RootFS.DiffIDs[i], layers[i].tar)
			}
		})
	}
	assertEmptyDir(t, opts.TempDir)
}

func checkZstdLayer(t *testing.T, reg *testRegistry, repo string, l ocispec.Descriptor, diffID digest.Digest, srcTar []byte) {
	t.Helper()
	if l.MediaType != zstdchunked.MediaType {
		t.Errorf("layer %s media type %q, want %q", l.Digest, l.MediaType, zstdchunked.MediaType)
	}
	for _, k := range []string{zstdchunked.ManifestChecksumAnnotation, zstdchunked.ManifestPositionAnnotation, zstdchunked.TarSplitPositionAnnotation} {
		if l.Annotations[k] == "" {
			t.Errorf("layer %s lacks annotation %s", l.Digest, k)
		}
	}
	blob, ok := reg.get(t, repo+"/blobs/"+l.Digest.String())
	if !ok {
		t.Fatalf("blob %s missing", l.Digest)
	}
	toc := digest.Digest(l.Annotations[zstdchunked.ManifestChecksumAnnotation])
	b, err := zstdchunked.Open(t.Context(), bytes.NewReader(blob), int64(len(blob)), zstdchunked.OpenOptions{TOCDigest: toc, Annotations: l.Annotations})
	if err != nil {
		t.Fatalf("zstdchunked.Open(t.Context(), %s): %v", l.Digest, err)
	}
	zr, err := zstd.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	tarball, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("decompress %s: %v", l.Digest, err)
	}
	if digest.FromBytes(tarball) != diffID {
		t.Errorf("layer %s decompresses to %s, config says %s", l.Digest, digest.FromBytes(tarball), diffID)
	}
	want := tarContents(t, srcTar)
	got := tarContents(t, tarball)
	if len(got) != len(want) {
		t.Errorf("layer %s holds %d entries, the source %d", l.Digest, len(got), len(want))
	}
	for name, body := range want {
		if got[name] != body {
			t.Errorf("layer %s: %s differs from the source", l.Digest, name)
		}
		if e, ok := b.Index.Lookup(strings.TrimSuffix(name, "/")); !ok || e.Size != int64(len(body)) {
			t.Errorf("layer %s: TOC has %s of %v bytes, want %d", l.Digest, name, e, len(body))
		}
	}
}

// tarContents maps the names in a tar to their contents, without eStargz's own entries.
func tarContents(t *testing.T, b []byte) map[string]string {
	t.Helper()
	out := map[string]string{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "stargz.index.json" || strings.HasSuffix(h.Name, "prefetch.landmark") {
			continue
		}
		out[h.Name] = string(body)
	}
}
