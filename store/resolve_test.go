// SPDX-License-Identifier: Apache-2.0

package store

import (
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/types"

	"github.com/stargz-store/stargz-store/refspec"
)

func TestNewLayerEntry(t *testing.T) {
	ref, err := refspec.Parse("example.com/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	blob, toc, diff := digest.FromString("blob"), digest.FromString("toc"), digest.FromString("diff")
	esgz := func(edit func(*types.BlobInfo)) types.BlobInfo {
		bi := types.BlobInfo{Digest: blob, Size: 1000, MediaType: ocispec.MediaTypeImageLayerGzip, Annotations: map[string]string{
			annotationTOCDigest:        toc.String(),
			annotationUncompressedSize: "4096",
		}}
		if edit != nil {
			edit(&bi)
		}
		return bi
	}
	tests := []struct {
		name      string
		bi        types.BlobInfo
		diffID    digest.Digest
		wantWhy   string // "" = lazy
		wantUSize int64
		names     []digest.Digest
	}{
		{"estargz", esgz(nil), diff, "", 4096, []digest.Digest{blob, toc}},
		{"docker media type", esgz(func(bi *types.BlobInfo) { bi.MediaType = "application/vnd.docker.image.rootfs.diff.tar.gzip" }), diff, "", 4096, nil},
		{"no size annotation", esgz(func(bi *types.BlobInfo) { delete(bi.Annotations, annotationUncompressedSize) }), diff, "", -1, nil},
		{"bad size annotation", esgz(func(bi *types.BlobInfo) { bi.Annotations[annotationUncompressedSize] = "-3" }), diff, "", -1, nil},
		{"plain gzip", esgz(func(bi *types.BlobInfo) { bi.Annotations = nil }), diff, "no " + annotationTOCDigest, -1, []digest.Digest{blob}},
		{"zstd:chunked", esgz(func(bi *types.BlobInfo) {
			bi.MediaType = "application/vnd.oci.image.layer.v1.tar+zstd"
			bi.Annotations = map[string]string{annotationZstdChunked: toc.String()}
		}), diff, "", -1, []digest.Digest{blob, toc}}, // more in resolve_zstd_test.go
		{"zstd media type", esgz(func(bi *types.BlobInfo) { bi.MediaType = "application/vnd.oci.image.layer.v1.tar+zstd" }), diff, "not gzip", 4096, nil},
		{"encrypted", esgz(func(bi *types.BlobInfo) { bi.MediaType = "application/vnd.oci.image.layer.v1.tar+gzip+encrypted" }), diff, "not gzip", 4096, nil},
		{"bad toc annotation", esgz(func(bi *types.BlobInfo) { bi.Annotations[annotationTOCDigest] = "sha256:xyz" }), diff, "invalid", 4096, nil},
		{"foreign", esgz(func(bi *types.BlobInfo) { bi.URLs = []string{"https://example.com/l"} }), diff, "foreign", 4096, nil},
		{"no diff_id", esgz(nil), "", "diff_id", 4096, nil},
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
			if e.desc.UncompressedSize != tt.wantUSize {
				t.Errorf("UncompressedSize = %d, want %d", e.desc.UncompressedSize, tt.wantUSize)
			}
			for _, d := range tt.names {
				if !e.names(d) {
					t.Errorf("names(%s) = false", d)
				}
			}
			if e.names(digest.FromString("other")) || e.names("") {
				t.Errorf("names matches an unrelated digest")
			}
		})
	}
}
