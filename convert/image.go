// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"
	"golang.org/x/sync/errgroup"
)

// maxConfigSize bounds the image config read into memory; real configs are a few KiB.
const maxConfigSize = 16 << 20

// Image converts the image at src into eStargz and writes it to dst, returning the digest of
// the manifest (or index) written.
//
// src and dst are containers/image references (see ParseReference): "docker://host/repo:tag" or
// a bare "host/repo:tag" (short names normalised as Podman does), "oci:DIR:TAG",
// "oci-archive:FILE:TAG", or "containers-storage:NAME", which goes through `podman save` and
// `podman load` (see Options.Podman). When src names a manifest list or OCI index, every
// platform is converted and an OCI index is written, unless Options.Platform picks one. A
// docker dst must be a tag, not a digest.
//
// dst is tagged only after every blob, instance manifest and (with Options.ExternalTOC) the TOC
// image were written, so a failed conversion never moves the destination tag. Errors wrap
// ErrNotFound, ErrUnauthorized, ErrUnreachable, ErrUnsupported or ErrKeepDiffID where they
// apply, together with the cause.
//
// Image is safe to call concurrently.
func Image(ctx context.Context, src, dst string, opts Options) (digest.Digest, error) {
	opts = opts.withDefaults()
	if err := opts.check(); err != nil {
		return "", err
	}
	st := &storageTransfer{run: opts.runPodman, podman: opts.Podman}
	defer st.cleanup()
	srcArg, dstArg, err := st.prepare(ctx, opts.TempDir, src, dst)
	if err != nil {
		return "", err
	}
	srcRef, err := ParseReference(srcArg)
	if err != nil {
		return "", fmt.Errorf("parse source reference %q: %w", src, err)
	}
	dstRef, err := ParseReference(dstArg)
	if err != nil {
		return "", fmt.Errorf("parse destination reference %q: %w", dst, err)
	}
	if _, ok := dstRef.DockerReference().(reference.Digested); ok && dstRef.Transport().Name() == docker.Transport.Name() {
		return "", fmt.Errorf("destination %s: must be a tag, not a digest", dst)
	}
	var tocRef types.ImageReference
	if opts.ExternalTOC {
		if tocRef, err = tocImageReference(dstRef); err != nil {
			return "", fmt.Errorf("destination %s: %w", dst, err)
		}
	}
	p := newProgress(opts.Progress, opts.ProgressBars)
	d, err := convertImage(ctx, srcRef, dstRef, tocRef, opts, p)
	if err != nil {
		return "", err
	}
	if err := st.finish(ctx); err != nil {
		return "", err
	}
	p.printf("wrote %s@%s\n", dst, d)
	return d, nil
}

// convertImage converts between parsed references; tocRef is the TOC image's reference, or nil
// without an external TOC.
func convertImage(ctx context.Context, srcRef, dstRef, tocRef types.ImageReference, opts Options, p *progress) (digest.Digest, error) {
	sys := opts.systemContext()
	srcName, dstName := refName(srcRef), refName(dstRef)
	source, err := srcRef.NewImageSource(ctx, sys)
	if err != nil {
		return "", classify("open source "+srcName, err)
	}
	defer source.Close()
	raw, mime, err := source.GetManifest(ctx, nil)
	if err != nil {
		return "", classify("read source "+srcName+": fetch manifest", err)
	}
	dest, err := dstRef.NewImageDestination(ctx, sys)
	if err != nil {
		return "", classify("open destination "+dstName, err)
	}
	defer func() { dest.Close() }()
	// Fail before the expensive part when the destination is unreachable or refuses us: checking
	// for a blob pings the registry and authenticates with push scope.
	probe := types.BlobInfo{Digest: digest.FromBytes(raw), Size: int64(len(raw))}
	if _, _, err := dest.TryReusingBlob(ctx, probe, none.NoCache, false); err != nil {
		return "", classify("open destination "+dstName, err)
	}
	c := &converter{src: source, dst: dest, opts: opts, sys: sys, log: opts.Logger.With("src", srcName, "dst", dstName),
		progress: p, done: map[digest.Digest]layerResult{}}
	var out []byte
	outMIME := ocispec.MediaTypeImageManifest
	if manifest.MIMETypeIsMultiImage(mime) && opts.Platform == "" {
		if out, err = c.index(ctx, raw, mime); err != nil {
			return "", fmt.Errorf("convert %s: %w", srcName, err)
		}
		outMIME = ocispec.MediaTypeImageIndex
	} else {
		if raw, mime, err = chooseInstance(ctx, source, sys, raw, mime); err != nil {
			return "", fmt.Errorf("read source %s: %w", srcName, err)
		}
		if out, err = c.instance(ctx, raw, mime); err != nil {
			return "", fmt.Errorf("convert %s: %w", srcName, err)
		}
	}
	if tocRef != nil {
		if err := c.pushTOCImage(ctx, tocRef); err != nil {
			return "", fmt.Errorf("push TOC image %s: %w", refName(tocRef), err)
		}
		if dstRef.Transport().Name() == layout.Transport.Name() {
			// An OCI layout destination rewrites index.json from what it read when opened,
			// which would drop the TOC image's entry: open it again (the blobs are on disk).
			dest.Close()
			if dest, err = dstRef.NewImageDestination(ctx, sys); err != nil {
				return "", classify("open destination "+dstName, err)
			}
		}
	}
	if err := dest.PutManifest(ctx, out, nil); err != nil {
		return "", classify("push "+dstName+": upload manifest", err)
	}
	if err := dest.Commit(ctx, pushedImage{ref: dstRef, manifest: out, mime: outMIME}); err != nil {
		return "", fmt.Errorf("push %s: commit: %w", dstName, err)
	}
	d := digest.FromBytes(out)
	c.log.Info("converted image", "manifest", d)
	return d, nil
}

// chooseInstance returns the manifest of the instance for the platform sys asks for (the host's
// by default) when raw is a list, else raw itself.
func chooseInstance(ctx context.Context, src types.ImageSource, sys *types.SystemContext, raw []byte, mime string) ([]byte, string, error) {
	if !manifest.MIMETypeIsMultiImage(mime) {
		return raw, mime, nil
	}
	list, err := manifest.ListFromBlob(raw, mime)
	if err != nil {
		return nil, "", fmt.Errorf("parse manifest list: %w", err)
	}
	instance, err := list.ChooseInstance(sys)
	if err != nil {
		return nil, "", fmt.Errorf("choose platform: %w: %w", ErrNotFound, err)
	}
	if raw, mime, err = src.GetManifest(ctx, &instance); err != nil {
		return nil, "", classify("fetch manifest "+instance.String(), err)
	}
	return raw, mime, nil
}

// index converts every image of a manifest list or index, writes each converted manifest by
// digest and returns the new OCI index (not yet written). Entries that are not images of a
// platform (attestations, nested indexes) are left out.
func (c *converter) index(ctx context.Context, raw []byte, mime string) ([]byte, error) {
	// A Docker manifest list has the same JSON shape as an OCI index for what is kept here.
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		return nil, fmt.Errorf("parse %s: %w", mime, err)
	}
	out := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Annotations: idx.Annotations}
	for i, d := range idx.Manifests {
		if manifest.MIMETypeIsMultiImage(d.MediaType) || (d.Platform != nil && d.Platform.OS == "unknown") {
			c.log.Info("leaving out an index entry that is not a platform image", "digest", d.Digest, "mediaType", d.MediaType)
			continue
		}
		instRaw, instMIME, err := c.src.GetManifest(ctx, &d.Digest)
		if err != nil {
			return nil, classify("fetch manifest "+d.Digest.String(), err)
		}
		if ok, err := manifest.MatchesDigest(instRaw, d.Digest); err != nil || !ok {
			return nil, fmt.Errorf("manifest %s does not match its digest", d.Digest)
		}
		c.progress.printf("platform %d/%d %s\n", i+1, len(idx.Manifests), platformString(d.Platform))
		m, err := c.instance(ctx, instRaw, instMIME)
		if err != nil {
			return nil, fmt.Errorf("platform %s: %w", platformString(d.Platform), err)
		}
		md := digest.FromBytes(m)
		if err := c.dst.PutManifest(ctx, m, &md); err != nil {
			return nil, classify("upload manifest "+md.String(), err)
		}
		out.Manifests = append(out.Manifests, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md,
			Size: int64(len(m)), Platform: d.Platform, Annotations: d.Annotations})
	}
	if len(out.Manifests) == 0 {
		return nil, fmt.Errorf("index has no platform image: %w", ErrUnsupported)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode index: %w", err)
	}
	return b, nil
}

func platformString(p *ocispec.Platform) string {
	if p == nil {
		return "unknown platform"
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// instance converts one single-platform image: its layers and config are written to the
// destination, and its new manifest is returned (not written).
func (c *converter) instance(ctx context.Context, raw []byte, mime string) ([]byte, error) {
	img, err := readImage(ctx, c.src, raw, mime)
	if err != nil {
		return nil, fmt.Errorf("read source: %w", err)
	}
	layers, diffIDs, err := c.layers(ctx, img)
	if err != nil {
		return nil, err
	}
	return c.pushConfig(ctx, img, layers, diffIDs)
}

// sourceImage is the single-platform image read from the source.
type sourceImage struct {
	layers      []types.BlobInfo
	configInfo  types.BlobInfo
	config      []byte
	diffIDs     []digest.Digest   // from config; may be shorter than layers in a broken image
	annotations map[string]string // manifest annotations (OCI only)
}

// readImage parses a single-platform manifest and fetches its config.
func readImage(ctx context.Context, src types.ImageSource, raw []byte, mime string) (*sourceImage, error) {
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
			b := c.progress.start(fmt.Sprintf("layer %d/%d %s", i+1, len(img.layers), shortDigest(info.Digest)))
			r, err := c.layer(gctx, info, srcDiffID, b)
			if err != nil {
				b.finish("failed")
				return fmt.Errorf("layer %d (%s): %w", i+1, info.Digest, err)
			}
			b.finish("-> " + r.desc.Digest.String())
			descs[i], diffIDs[i] = r.desc, r.diffID
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, err
	}
	return descs, diffIDs, nil
}

// shortDigest is the first 12 hex digits of d, as container tools show image IDs.
func shortDigest(d digest.Digest) string {
	if e := d.Encoded(); len(e) > 12 {
		return e[:12]
	}
	return d.String()
}

// pushConfig uploads the rewritten config and returns the new manifest, which the caller writes.
func (c *converter) pushConfig(ctx context.Context, img *sourceImage, layers []ocispec.Descriptor, diffIDs []digest.Digest) ([]byte, error) {
	config, err := rewriteConfig(img.config, diffIDs)
	if err != nil {
		return nil, err
	}
	cfgInfo := types.BlobInfo{Digest: digest.FromBytes(config), Size: int64(len(config)), MediaType: ocispec.MediaTypeImageConfig}
	if _, err := c.dst.PutBlob(ctx, bytes.NewReader(config), cfgInfo, none.NoCache, true); err != nil {
		return nil, classify("upload config", err)
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
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return raw, nil
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
	mime     string
}

func (p pushedImage) Reference() types.ImageReference { return p.ref }
func (p pushedImage) Manifest(context.Context) ([]byte, string, error) {
	return p.manifest, p.mime, nil
}
func (p pushedImage) Signatures(context.Context) ([][]byte, error) { return nil, nil }

var _ types.UnparsedImage = pushedImage{}
