// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"

	"github.com/stargz-store/stargz-store/refspec"
)

// Layer annotations the store reads (stargz-snapshotter and
// containers/storage spell them so).
const (
	annotationTOCDigest        = "containerd.io/snapshot/stargz/toc.digest"
	annotationUncompressedSize = "io.containers.estargz.uncompressed-size"
	annotationZstdChunked      = "io.github.containers.zstd-chunked.manifest-checksum"
)

// maxConfigSize bounds an image config read into memory.
const maxConfigSize = 16 << 20

// image is what resolving a reference gives: the layers of the instance
// for the host platform and, for an index, the other instances still to
// search. It is immutable.
type image struct {
	ref      refspec.Reference
	manifest digest.Digest   // of the instance whose layers are listed
	layers   []layerEntry    // in manifest order
	others   []digest.Digest // index instances not resolved yet
	// tails are the eStargz layers' blob tails, fetched ahead (tails.go).
	tails map[digest.Digest]*tailFetch
}

// layerEntry is one layer as the manifest and config describe it.
type layerEntry struct {
	desc LayerDesc
	// zstd is the zstd:chunked manifest checksum, the Gen B name of a
	// zstd:chunked layer. It equals desc.TOCDigest when the layer is served
	// as zstd:chunked, and is kept apart for a layer that carries both
	// eStargz and zstd:chunked annotations (served as eStargz, if at all).
	zstd digest.Digest
	// notLazy says why the layer cannot be served lazily; nil if it may be.
	notLazy error
	// run are the paths the image's default command may be at
	// (commandPaths); any layer of the image may hold it.
	run []string
}

// names reports whether d names the layer: its blob digest (Gen A) or its
// TOC digest (Gen B).
func (e layerEntry) names(d digest.Digest) bool {
	return d == e.desc.Digest || (d == e.desc.TOCDigest && d != "") || (d == e.zstd && d != "")
}

func findLayer(entries []layerEntry, d digest.Digest) (layerEntry, bool) {
	for _, e := range entries {
		if e.names(d) {
			return e, true
		}
	}
	return layerEntry{}, false
}

// fetchImage resolves ref: the manifest, for an index the instance for
// the host platform (chosen as containers/image chooses, from sys), and
// the config's DiffIDs.
// onLayers, if not nil, hears of the instance's layers as soon as the
// manifest is parsed, before the config is fetched.
func fetchImage(ctx context.Context, src manifestSource, sys *types.SystemContext, ref refspec.Reference, onLayers func([]types.BlobInfo)) (*image, error) {
	raw, mime, err := src.manifest(ctx, "")
	if err != nil {
		return nil, err
	}
	if d := ref.Digest(); d != "" {
		if ok, err := manifest.MatchesDigest(raw, d); err != nil || !ok {
			return nil, fmt.Errorf("manifest does not match %s: %w", d, ErrVerify)
		}
	}
	img := &image{ref: ref, manifest: digest.FromBytes(raw)}
	if manifest.MIMETypeIsMultiImage(mime) {
		list, err := manifest.ListFromBlob(raw, mime)
		if err != nil {
			return nil, fmt.Errorf("parse index: %w", err)
		}
		all := list.Instances()
		chosen, err := list.ChooseInstance(sys)
		if err != nil {
			// No instance for this host: search them all when asked.
			img.others = all
			return img, nil
		}
		img.others = slices.DeleteFunc(slices.Clone(all), func(d digest.Digest) bool { return d == chosen })
		img.manifest = chosen
		if raw, mime, err = getInstance(ctx, src, chosen); err != nil {
			return nil, err
		}
	}
	if img.layers, err = readInstance(ctx, src, ref, raw, mime, onLayers); err != nil {
		return nil, err
	}
	return img, nil
}

// fetchInstances resolves the given index instances of ref and returns
// all their layers. Any failure fails the whole search, so that a
// transient error is not remembered as "not there".
func fetchInstances(ctx context.Context, src manifestSource, ref refspec.Reference, instances []digest.Digest) ([]layerEntry, error) {
	var all []layerEntry
	for _, inst := range instances {
		raw, mime, err := getInstance(ctx, src, inst)
		if err != nil {
			return nil, err
		}
		if manifest.MIMETypeIsMultiImage(mime) {
			continue // nested indexes are not images; Podman does not follow them either
		}
		layers, err := readInstance(ctx, src, ref, raw, mime, nil)
		if err != nil {
			return nil, fmt.Errorf("instance %s: %w", inst, err)
		}
		all = append(all, layers...)
	}
	return all, nil
}

func getInstance(ctx context.Context, src manifestSource, inst digest.Digest) ([]byte, string, error) {
	raw, mime, err := src.manifest(ctx, inst.String())
	if err != nil {
		return nil, "", fmt.Errorf("fetch manifest %s: %w", inst, err)
	}
	if ok, err := manifest.MatchesDigest(raw, inst); err != nil || !ok {
		return nil, "", fmt.Errorf("manifest %s does not match its digest: %w", inst, ErrVerify)
	}
	return raw, mime, nil
}

// readInstance parses one image manifest and fetches its config.
func readInstance(ctx context.Context, src manifestSource, ref refspec.Reference, raw []byte, mime string, onLayers func([]types.BlobInfo)) ([]layerEntry, error) {
	m, err := manifest.FromBlob(raw, mime)
	if err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	if onLayers != nil {
		infos := make([]types.BlobInfo, 0, len(m.LayerInfos()))
		for _, li := range m.LayerInfos() {
			infos = append(infos, li.BlobInfo)
		}
		onLayers(infos)
	}
	var diffIDs []digest.Digest
	var run []string
	if ci := m.ConfigInfo(); ci.Digest != "" {
		cfg, err := fetchConfig(ctx, src, ci)
		if err != nil {
			return nil, err
		}
		diffIDs = cfg.RootFS.DiffIDs
		run = commandPaths(cfg.Config)
	}
	infos := m.LayerInfos()
	var why error
	if len(diffIDs) != len(infos) {
		why = fmt.Errorf("image config lists %d diff_ids for %d layers", len(diffIDs), len(infos))
		diffIDs = nil
	}
	entries := make([]layerEntry, len(infos))
	for i, li := range infos {
		var diffID digest.Digest
		if diffIDs != nil {
			diffID = diffIDs[i]
		}
		entries[i] = newLayerEntry(ref, li.BlobInfo, diffID)
		entries[i].run = run
		if entries[i].notLazy == nil && why != nil {
			entries[i].notLazy = why
		}
	}
	return entries, nil
}

func fetchConfig(ctx context.Context, src manifestSource, info types.BlobInfo) (*ocispec.Image, error) {
	data, err := src.blob(ctx, info.Digest, maxConfigSize)
	if err != nil {
		return nil, fmt.Errorf("fetch config %s: %w", info.Digest, err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("parse config %s: %w", info.Digest, err)
	}
	return &cfg, nil
}

// newLayerEntry builds the descriptor of one manifest layer and decides
// whether it can be served lazily at all.
func newLayerEntry(ref refspec.Reference, bi types.BlobInfo, diffID digest.Digest) layerEntry {
	e := layerEntry{desc: LayerDesc{
		Ref:              ref,
		Digest:           bi.Digest,
		Size:             bi.Size,
		MediaType:        bi.MediaType,
		DiffID:           diffID,
		UncompressedSize: -1,
		Format:           FormatEStargz,
		Annotations:      bi.Annotations,
	}}
	a := bi.Annotations
	if s, ok := a[annotationUncompressedSize]; ok {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
			e.desc.UncompressedSize = n
		}
	}
	if s := a[annotationZstdChunked]; s != "" {
		e.zstd, _ = refspec.ParseDigest(s)
	}
	var err error
	if s := a[annotationTOCDigest]; s != "" {
		if e.desc.TOCDigest, err = refspec.ParseDigest(s); err != nil {
			e.notLazy = fmt.Errorf("invalid %s annotation %q", annotationTOCDigest, s)
			return e
		}
	}
	if e.desc.TOCDigest == "" && e.zstd != "" {
		return zstdChunkedEntry(e, bi)
	}
	if _, ok := a[annotationZstdChunked]; ok && e.zstd == "" {
		e.notLazy = fmt.Errorf("invalid %s annotation %q", annotationZstdChunked, a[annotationZstdChunked])
		return e
	}
	switch {
	case e.desc.TOCDigest == "":
		e.notLazy = fmt.Errorf("no %s annotation (not eStargz)", annotationTOCDigest)
	case !isGzip(bi.MediaType):
		e.notLazy = fmt.Errorf("media type %q is not gzip", bi.MediaType)
	default:
		e.notLazy = notServable(bi, diffID)
	}
	return e
}

// notServable says why a layer of a lazy format still cannot be served
// lazily: its blob is elsewhere, its size unknown, or its DiffID missing.
func notServable(bi types.BlobInfo, diffID digest.Digest) error {
	switch {
	case len(bi.URLs) > 0:
		return errors.New("foreign layer with external URLs")
	case bi.Size <= 0:
		return fmt.Errorf("layer size %d in the manifest", bi.Size)
	case diffID == "":
		return errors.New("image config gives no diff_id for the layer")
	}
	return nil
}

// zstdChunkedEntry finishes the entry of a layer named by a zstd:chunked
// manifest checksum (and no eStargz TOC digest): it is served lazily as
// FormatZstdChunked, with the checksum as its TOC digest (the Gen B name),
// when it is a zstd tar the config gives a DiffID for. The TOC position
// annotation is optional: the reader falls back to the blob's footer.
func zstdChunkedEntry(e layerEntry, bi types.BlobInfo) layerEntry {
	e.desc.Format = FormatZstdChunked
	e.desc.TOCDigest = e.zstd
	if !isZstd(bi.MediaType) {
		e.notLazy = fmt.Errorf("media type %q of a zstd:chunked layer is not zstd", bi.MediaType)
	} else {
		e.notLazy = notServable(bi, e.desc.DiffID)
	}
	return e
}

// isZstd reports whether a layer media type is a zstd tar, the only
// compression zstd:chunked uses.
func isZstd(mt string) bool {
	return mt == ocispec.MediaTypeImageLayerZstd || strings.HasSuffix(mt, ".tar+zstd") && !strings.Contains(mt, "encrypted")
}

// isGzip reports whether a layer media type is a gzip tar, the only
// compression eStargz uses.
func isGzip(mt string) bool {
	switch mt {
	case manifest.DockerV2Schema2LayerMediaType, ocispec.MediaTypeImageLayerGzip:
		return true
	}
	return strings.HasSuffix(mt, ".tar+gzip") && !strings.Contains(mt, "encrypted")
}
