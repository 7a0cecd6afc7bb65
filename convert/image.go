// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"
	"golang.org/x/sync/errgroup"
)

// maxConfigSize bounds the image config read into memory; real configs are a few KiB.
const maxConfigSize = 16 << 20

// Image converts the image at registry reference src into eStargz and pushes it to registry
// reference dst, returning the digest of the pushed OCI manifest.
//
// src and dst are references such as "registry.example.com/repo:tag", optionally prefixed with
// "docker://"; short names are normalised as Podman does (docker.io/library/, :latest). src may
// name a manifest list or OCI index, in which case the instance for the host platform (or the one
// SystemContext asks for) is converted; dst must be a tag, not a digest. dst is tagged only after
// every blob was uploaded. Errors wrap ErrNotFound, ErrUnauthorized, ErrUnreachable or
// ErrUnsupported where they apply, together with the cause.
//
// Image is safe to call concurrently.
func Image(ctx context.Context, src, dst string, opts Options) (digest.Digest, error) {
	opts = opts.withDefaults()
	sys := opts.systemContext()
	srcRef, err := parseReference(src)
	if err != nil {
		return "", fmt.Errorf("parse source reference %q: %w", src, err)
	}
	dstRef, err := parseReference(dst)
	if err != nil {
		return "", fmt.Errorf("parse destination reference %q: %w", dst, err)
	}
	if _, ok := dstRef.DockerReference().(reference.Digested); ok {
		return "", fmt.Errorf("destination %s: must be a tag, not a digest", dst)
	}
	srcName, dstName := reference.FamiliarString(srcRef.DockerReference()), reference.FamiliarString(dstRef.DockerReference())

	source, err := srcRef.NewImageSource(ctx, sys)
	if err != nil {
		return "", classify("open source "+srcName, err)
	}
	defer source.Close()
	img, err := readImage(ctx, source, sys)
	if err != nil {
		return "", fmt.Errorf("read source %s: %w", srcName, err)
	}
	dest, err := dstRef.NewImageDestination(ctx, sys)
	if err != nil {
		return "", classify("open destination "+dstName, err)
	}
	defer dest.Close()
	// Fail before the expensive part when the destination is unreachable or refuses us: checking
	// for a blob pings the registry and authenticates with push scope.
	if _, _, err := dest.TryReusingBlob(ctx, img.configInfo, none.NoCache, false); err != nil {
		return "", classify("open destination "+dstName, err)
	}

	c := &converter{src: source, dst: dest, opts: opts, log: opts.Logger.With("src", srcName, "dst", dstName),
		progress: newProgress(opts.Progress)}
	layers, diffIDs, err := c.layers(ctx, img)
	if err != nil {
		return "", fmt.Errorf("convert %s: %w", srcName, err)
	}
	d, err := c.push(ctx, dstRef, img, layers, diffIDs)
	if err != nil {
		return "", fmt.Errorf("push %s: %w", dstName, err)
	}
	c.log.Info("converted image", "manifest", d, "layers", len(layers))
	c.progress.printf("pushed %s@%s\n", dstName, d)
	return d, nil
}

// parseReference accepts "host/repo:tag" with an optional "docker://" transport prefix.
func parseReference(s string) (types.ImageReference, error) {
	return docker.ParseReference("//" + strings.TrimPrefix(s, "docker://"))
}

// sourceImage is the single-platform image read from the source.
type sourceImage struct {
	layers      []types.BlobInfo
	configInfo  types.BlobInfo
	config      []byte
	diffIDs     []digest.Digest   // from config; may be shorter than layers in a broken image
	annotations map[string]string // manifest annotations (OCI only)
}

// readImage reads the manifest (choosing a platform from a list) and the config of the image.
func readImage(ctx context.Context, src types.ImageSource, sys *types.SystemContext) (*sourceImage, error) {
	raw, mime, err := src.GetManifest(ctx, nil)
	if err != nil {
		return nil, classify("fetch manifest", err)
	}
	if manifest.MIMETypeIsMultiImage(mime) {
		list, err := manifest.ListFromBlob(raw, mime)
		if err != nil {
			return nil, fmt.Errorf("parse manifest list: %w", err)
		}
		instance, err := list.ChooseInstance(sys)
		if err != nil {
			return nil, fmt.Errorf("choose platform: %w: %w", ErrNotFound, err)
		}
		if raw, mime, err = src.GetManifest(ctx, &instance); err != nil {
			return nil, classify("fetch manifest "+instance.String(), err)
		}
	}
	if mime != manifest.DockerV2Schema2MediaType && mime != ocispec.MediaTypeImageManifest {
		return nil, fmt.Errorf("manifest type %q: %w", mime, ErrUnsupported)
	}
	m, err := manifest.FromBlob(raw, mime)
	if err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	img := &sourceImage{}
	for _, l := range m.LayerInfos() {
		img.layers = append(img.layers, l.BlobInfo)
	}
	var extra struct {
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(raw, &extra); err != nil {
		return nil, fmt.Errorf("parse manifest: %w", err)
	}
	img.annotations = extra.Annotations
	img.configInfo = m.ConfigInfo()
	if img.config, err = fetchConfig(ctx, src, img.configInfo); err != nil {
		return nil, err
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(img.config, &cfg); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	img.diffIDs = cfg.RootFS.DiffIDs
	return img, nil
}

// fetchConfig downloads and verifies the config blob.
func fetchConfig(ctx context.Context, src types.ImageSource, info types.BlobInfo) ([]byte, error) {
	if err := info.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("config digest: %w", err)
	}
	rc, _, err := src.GetBlob(ctx, info, none.NoCache)
	if err != nil {
		return nil, classify("fetch config "+info.Digest.String(), err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxConfigSize+1))
	switch {
	case err != nil:
		return nil, fmt.Errorf("fetch config %s: %w", info.Digest, err)
	case len(b) > maxConfigSize:
		return nil, fmt.Errorf("config %s: larger than %d bytes", info.Digest, maxConfigSize)
	case info.Digest.Algorithm().FromBytes(b) != info.Digest:
		return nil, fmt.Errorf("config %s: digest mismatch", info.Digest)
	}
	return b, nil
}

// layers converts all layers, at most opts.Parallelism at a time, and returns their descriptors
// and DiffIDs in manifest order.
func (c *converter) layers(ctx context.Context, img *sourceImage) ([]ocispec.Descriptor, []digest.Digest, error) {
	descs := make([]ocispec.Descriptor, len(img.layers))
	diffIDs := make([]digest.Digest, len(img.layers))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.opts.Parallelism)
	for i, info := range img.layers {
		var srcDiffID digest.Digest
		if i < len(img.diffIDs) {
			srcDiffID = img.diffIDs[i]
		}
		g.Go(func() error {
			r, err := c.layer(gctx, info, srcDiffID)
			if err != nil {
				return fmt.Errorf("layer %d (%s): %w", i+1, info.Digest, err)
			}
			descs[i], diffIDs[i] = r.desc, r.diffID
			c.progress.printf("layer %d/%d %s -> %s\n", i+1, len(img.layers), info.Digest, r.desc.Digest)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	return descs, diffIDs, nil
}

// push uploads the rewritten config and then the manifest, which moves the destination tag.
func (c *converter) push(ctx context.Context, ref types.ImageReference, img *sourceImage,
	layers []ocispec.Descriptor, diffIDs []digest.Digest) (digest.Digest, error) {
	config, err := rewriteConfig(img.config, diffIDs)
	if err != nil {
		return "", err
	}
	cfgInfo := types.BlobInfo{Digest: digest.FromBytes(config), Size: int64(len(config)), MediaType: ocispec.MediaTypeImageConfig}
	if _, err := c.dst.PutBlob(ctx, bytes.NewReader(config), cfgInfo, none.NoCache, true); err != nil {
		return "", classify("upload config", err)
	}
	m := ocispec.Manifest{
		Versioned:   specs.Versioned{SchemaVersion: 2},
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      ocispec.Descriptor{MediaType: cfgInfo.MediaType, Digest: cfgInfo.Digest, Size: cfgInfo.Size},
		Layers:      layers,
		Annotations: img.annotations,
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode manifest: %w", err)
	}
	if err := c.dst.PutManifest(ctx, raw, nil); err != nil {
		return "", classify("upload manifest", err)
	}
	if err := c.dst.Commit(ctx, pushedImage{ref: ref, manifest: raw}); err != nil {
		return "", fmt.Errorf("commit: %w", err)
	}
	return digest.FromBytes(raw), nil
}

// rewriteConfig replaces rootfs.diff_ids in an image config and keeps every other field,
// including history and fields unknown to the OCI spec, as they were.
func rewriteConfig(raw []byte, diffIDs []digest.Digest) ([]byte, error) {
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("parse config: %w", err)
	}
	rootfs := map[string]json.RawMessage{}
	if r, ok := cfg["rootfs"]; ok {
		if err := json.Unmarshal(r, &rootfs); err != nil {
			return nil, fmt.Errorf("parse config rootfs: %w", err)
		}
	}
	var err error
	if rootfs["type"], err = json.Marshal("layers"); err != nil {
		return nil, err
	}
	if rootfs["diff_ids"], err = json.Marshal(diffIDs); err != nil {
		return nil, err
	}
	if cfg["rootfs"], err = json.Marshal(rootfs); err != nil {
		return nil, err
	}
	return json.Marshal(cfg)
}

// pushedImage is the types.UnparsedImage that ImageDestination.Commit wants: the manifest just
// written, without signatures.
type pushedImage struct {
	ref      types.ImageReference
	manifest []byte
}

func (p pushedImage) Reference() types.ImageReference { return p.ref }
func (p pushedImage) Manifest(context.Context) ([]byte, string, error) {
	return p.manifest, ocispec.MediaTypeImageManifest, nil
}
func (p pushedImage) Signatures(context.Context) ([][]byte, error) { return nil, nil }

var _ types.UnparsedImage = pushedImage{}
