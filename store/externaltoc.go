// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"

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
// The store looks for the TOC image when it resolves a tagged image that has eStargz layers,
// and opens the layers it covers with FormatEStargzExternal. A missing TOC image costs one
// manifest request per resolution and changes nothing.
const (
	tocImageSuffix        = "-esgztoc"
	annotationLayerDigest = "containerd.io/snapshot/stargz/layer.digest"
	// annotationExternalTOC carries the fetched TOC blob from resolution to the opener in
	// LayerDesc.Annotations. It is only read for FormatEStargzExternal, which only
	// withExternalTOCs sets, always together with it, so a registry cannot inject it.
	annotationExternalTOC = "io.github.stargz-store.external-toc"
	// maxTOCBlob bounds a TOC blob read into memory (the compressed form of the
	// default TOC limit).
	maxTOCBlob = estargz.DefaultMaxTOCSize + estargz.DefaultMaxTOCSize/1024 + 64<<10
)

// FormatEStargzExternal is eStargz whose TOC lives in the image's TOC image.
const FormatEStargzExternal Format = "estargz+external-toc"

func init() {
	// openers (format.go) is the one table of formats; this one is kept beside its
	// resolution code.
	openers[FormatEStargzExternal] = openEStargzExternal
}

func openEStargzExternal(r io.ReaderAt, desc LayerDesc, opts LayerOptions) (*opened, error) {
	toc, ok := desc.Annotations[annotationExternalTOC]
	if !ok {
		return nil, fmt.Errorf("%w: no external TOC was fetched", ErrNotLazy)
	}
	b, err := estargz.OpenExternal(r, desc.Size, []byte(toc), estargz.OpenOptions{TOCDigest: desc.TOCDigest, MaxTOCSize: opts.MaxTOCSize})
	if err != nil {
		return nil, classifyEStargz(err)
	}
	return &opened{index: b.Index, decode: decodeEStargz, prefetchEnd: b.PrefetchEnd, compression: compressionGzip}, nil
}

// withExternalTOCs fetches the TOC image of ref, if there is one, and switches the eStargz
// layers it has a TOC for to FormatEStargzExternal. Failing to find or read the TOC image
// leaves the layers as they are (an external-TOC blob then opens as not lazy, and storage pulls
// it); only a cancelled ctx is returned as an error.
func withExternalTOCs(ctx context.Context, sys *types.SystemContext, ref refspec.Reference, layers []layerEntry) ([]layerEntry, error) {
	want := map[digest.Digest]int{}
	for i, e := range layers {
		if e.notLazy == nil && e.desc.TOCDigest != "" && (e.desc.Format == "" || e.desc.Format == FormatEStargz) {
			want[e.desc.Digest] = i
		}
	}
	tagged, ok := ref.Named().(reference.NamedTagged)
	if len(want) == 0 || !ok {
		return layers, nil
	}
	tocs, err := fetchTOCImage(ctx, sys, tagged, want)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return layers, nil
	}
	out := make([]layerEntry, len(layers))
	copy(out, layers)
	for blob, toc := range tocs {
		e := &out[want[blob]]
		e.desc.Annotations = maps.Clone(e.desc.Annotations)
		if e.desc.Annotations == nil {
			e.desc.Annotations = map[string]string{}
		}
		e.desc.Annotations[annotationExternalTOC] = string(toc)
		e.desc.Format = FormatEStargzExternal
	}
	return out, nil
}

// fetchTOCImage reads the TOC image of tagged and returns the TOC blobs of the wanted eStargz
// blobs, each checked against its descriptor's digest.
func fetchTOCImage(ctx context.Context, sys *types.SystemContext, tagged reference.NamedTagged, want map[digest.Digest]int) (map[digest.Digest][]byte, error) {
	named, err := reference.WithTag(reference.TrimNamed(tagged), tagged.Tag()+tocImageSuffix)
	if err != nil {
		return nil, err
	}
	iref, err := docker.NewReference(named)
	if err != nil {
		return nil, err
	}
	src, err := iref.NewImageSource(ctx, sys)
	if err != nil {
		return nil, fmt.Errorf("open TOC image %s: %w", named, err)
	}
	defer src.Close()
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
func tocImageLayers(ctx context.Context, src types.ImageSource) ([]ocispec.Descriptor, error) {
	raw, mime, err := src.GetManifest(ctx, nil)
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

func fetchTOCBlob(ctx context.Context, src types.ImageSource, d ocispec.Descriptor) ([]byte, error) {
	if err := d.Digest.Validate(); err != nil {
		return nil, err
	}
	if d.Size > maxTOCBlob {
		return nil, fmt.Errorf("TOC blob %s of %d bytes: %w", d.Digest, d.Size, estargz.ErrTooLarge)
	}
	rc, _, err := src.GetBlob(ctx, types.BlobInfo{Digest: d.Digest, Size: d.Size}, none.NoCache)
	if err != nil {
		return nil, fmt.Errorf("fetch TOC blob %s: %w", d.Digest, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxTOCBlob+1))
	if err != nil {
		return nil, fmt.Errorf("fetch TOC blob %s: %w", d.Digest, err)
	}
	if d.Digest.Algorithm().FromBytes(b) != d.Digest {
		return nil, fmt.Errorf("TOC blob %s: %w", d.Digest, errors.Join(ErrVerify, errors.New("content does not match its digest")))
	}
	return b, nil
}
