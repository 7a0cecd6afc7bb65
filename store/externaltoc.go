// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"encoding/json"
	"fmt"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"

	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/store/estargz"
)

// External TOCs (stargz-snapshotter's convention, which `stargz-store convert --external-toc`
// follows): an eStargz layer may end in the 46-byte external footer and keep its TOC in a
// separate "TOC image", the image's tag with the suffix tocImageSuffix. Each layer of the TOC
// image is a TOC blob (gzip of a tar holding stargz.index.json) whose descriptor names the
// eStargz blob in annotationLayerDigest. The TOC JSON is verified, as always, against the
// toc.digest annotation of the layer in the image itself; the TOC image is not trusted.
//
// The TOC image is fetched only when a layer's footer says its TOC is external
// (LayerOptions.ExternalTOC), so ordinary images cost no extra request.
const (
	tocImageSuffix        = "-esgztoc"
	annotationLayerDigest = "containerd.io/snapshot/stargz/layer.digest"
	// maxTOCBlob bounds a TOC blob read into memory (the compressed form of the
	// default TOC limit).
	maxTOCBlob = estargz.DefaultMaxTOCSize + estargz.DefaultMaxTOCSize/1024 + 64<<10
)

// fetchExternalTOC returns the TOC blob of desc from the TOC image of its reference.
func fetchExternalTOC(ctx context.Context, open sourceOpener, desc LayerDesc) ([]byte, error) {
	tagged, ok := desc.Ref.Named().(reference.NamedTagged)
	if !ok {
		return nil, fmt.Errorf("external TOC of %s: a digest reference has no TOC image tag", desc.Digest)
	}
	tocs, err := fetchTOCImage(ctx, open, tagged, map[digest.Digest]int{desc.Digest: 0})
	if err != nil {
		return nil, err
	}
	toc, ok := tocs[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("TOC image of %s has no TOC for layer %s", tagged, desc.Digest)
	}
	return toc, nil
}

// fetchTOCImage reads the TOC image of tagged and returns the TOC blobs of the wanted eStargz
// blobs, each checked against its descriptor's digest.
func fetchTOCImage(ctx context.Context, open sourceOpener, tagged reference.NamedTagged, want map[digest.Digest]int) (map[digest.Digest][]byte, error) {
	named, err := reference.WithTag(reference.TrimNamed(tagged), tagged.Tag()+tocImageSuffix)
	if err != nil {
		return nil, err
	}
	ref, err := refspec.Parse(named.String())
	if err != nil {
		return nil, err
	}
	src, err := open(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("open TOC image %s: %w", named, err)
	}
	descs, err := tocImageLayers(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("TOC image %s: %w", named, err)
	}
	out := map[digest.Digest][]byte{}
	for _, d := range descs {
		blob, err := digest.Parse(d.Annotations[annotationLayerDigest])
		if err != nil {
			continue
		}
		if _, ok := want[blob]; !ok || out[blob] != nil {
			continue
		}
		toc, err := fetchTOCBlob(ctx, src, d)
		if err != nil {
			return nil, fmt.Errorf("TOC image %s: %w", named, err)
		}
		out[blob] = toc
	}
	return out, nil
}

// tocImageLayers returns the layer descriptors of a TOC image: of its manifest, or of every
// manifest of its index.
func tocImageLayers(ctx context.Context, src manifestSource) ([]ocispec.Descriptor, error) {
	raw, mime, err := src.manifest(ctx, "")
	if err != nil {
		return nil, err
	}
	var instances []*digest.Digest
	if manifest.MIMETypeIsMultiImage(mime) {
		list, err := manifest.ListFromBlob(raw, mime)
		if err != nil {
			return nil, err
		}
		for _, d := range list.Instances() {
			instances = append(instances, &d)
		}
	} else {
		instances = []*digest.Digest{nil}
	}
	var out []ocispec.Descriptor
	for _, inst := range instances {
		if inst != nil {
			if raw, _, err = getInstance(ctx, src, *inst); err != nil {
				return nil, err
			}
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("parse manifest: %w", err)
		}
		out = append(out, m.Layers...)
	}
	return out, nil
}

func fetchTOCBlob(ctx context.Context, src manifestSource, d ocispec.Descriptor) ([]byte, error) {
	if err := d.Digest.Validate(); err != nil {
		return nil, err
	}
	if d.Size > maxTOCBlob {
		return nil, fmt.Errorf("TOC blob %s of %d bytes: %w", d.Digest, d.Size, estargz.ErrTooLarge)
	}
	b, err := src.blob(ctx, d.Digest, maxTOCBlob)
	if err != nil {
		return nil, fmt.Errorf("fetch TOC blob %s: %w", d.Digest, err)
	}
	return b, nil
}
