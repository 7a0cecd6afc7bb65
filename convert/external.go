// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"
)

// layerDigestAnnotation, on a layer of a TOC image, names the eStargz blob whose TOC that layer
// holds (stargz-snapshotter's external TOC convention).
const layerDigestAnnotation = "containerd.io/snapshot/stargz/layer.digest"

// tocLayer is the external TOC of one converted layer.
type tocLayer struct {
	blob digest.Digest // the eStargz blob
	toc  []byte        // the TOC blob: gzip of a tar holding stargz.index.json
}

// addTOC records the external TOC of a converted layer, if it has one.
func (c *converter) addTOC(toc []byte, blob digest.Digest) {
	if toc == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tocs = append(c.tocs, tocLayer{blob: blob, toc: toc})
}

// pushTOCImage writes the TOC image to ref: one OCI manifest (all platforms together, as
// stargz-snapshotter writes it) whose layers are the TOC blobs, sorted by digest, each annotated
// with the digest of the blob it describes, and whose config is "{}".
func (c *converter) pushTOCImage(ctx context.Context, ref types.ImageReference) error {
	c.mu.Lock()
	tocs := slices.Clone(c.tocs)
	c.mu.Unlock()
	if len(tocs) == 0 {
		c.log.Info("no layer was converted, so there is no TOC image to write", "ref", refName(ref))
		return nil
	}
	dest, err := ref.NewImageDestination(ctx, c.sys)
	if err != nil {
		return classify("open", err)
	}
	defer dest.Close()
	var layers []ocispec.Descriptor
	seen := map[digest.Digest]bool{}
	for _, t := range tocs {
		d := digest.FromBytes(t.toc)
		if seen[t.blob] {
			continue
		}
		seen[t.blob] = true
		info := types.BlobInfo{Digest: d, Size: int64(len(t.toc)), MediaType: ocispec.MediaTypeImageLayerGzip}
		if _, err := dest.PutBlob(ctx, bytes.NewReader(t.toc), info, none.NoCache, false); err != nil {
			return classify("upload TOC "+d.String(), err)
		}
		layers = append(layers, ocispec.Descriptor{MediaType: info.MediaType, Digest: d, Size: info.Size,
			Annotations: map[string]string{layerDigestAnnotation: t.blob.String()}})
	}
	slices.SortFunc(layers, func(a, b ocispec.Descriptor) int { return strings.Compare(a.Digest.String(), b.Digest.String()) })
	config := []byte("{}")
	cfg := types.BlobInfo{Digest: digest.FromBytes(config), Size: int64(len(config)), MediaType: ocispec.MediaTypeImageConfig}
	if _, err := dest.PutBlob(ctx, bytes.NewReader(config), cfg, none.NoCache, true); err != nil {
		return classify("upload config", err)
	}
	raw, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: cfg.MediaType, Digest: cfg.Digest, Size: cfg.Size},
		Layers:    layers,
	})
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	if err := dest.PutManifest(ctx, raw, nil); err != nil {
		return classify("upload manifest", err)
	}
	if err := dest.Commit(ctx, pushedImage{ref: ref, manifest: raw, mime: ocispec.MediaTypeImageManifest}); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	c.progress.printf("wrote TOC image %s@%s\n", refName(ref), digest.FromBytes(raw))
	return nil
}
