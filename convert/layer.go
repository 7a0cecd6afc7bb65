// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"strconv"
	"sync"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"

	"github.com/stargz-store/stargz-store/store/estargz"
)

// Layer annotations read by stargz-store and by containers/storage.
const (
	// tocDigestAnnotation is the sha256 of the uncompressed TOC JSON of an eStargz layer.
	tocDigestAnnotation = "containerd.io/snapshot/stargz/toc.digest"
	// uncompressedSizeAnnotation is the decimal size of the decompressed eStargz layer.
	uncompressedSizeAnnotation = "io.containers.estargz.uncompressed-size"
)

// converter holds what the layer jobs of one Image call share. Its methods are safe for
// concurrent use: the source and destination of the docker transport allow parallel blob I/O.
type converter struct {
	src      types.ImageSource
	dst      types.ImageDestination
	opts     Options
	sys      *types.SystemContext
	log      *slog.Logger
	progress *progress

	// mu guards the fields below.
	mu   sync.Mutex
	done map[digest.Digest]layerResult // converted layers by source blob digest (shared by platforms)
	tocs []tocLayer                    // external TOCs of the converted layers
}

// layerResult is one layer of the destination image.
type layerResult struct {
	desc   ocispec.Descriptor
	diffID digest.Digest
}

// layer converts one layer, or copies it unchanged when it already is eStargz and no files are
// to be prioritized. srcDiffID is the
// layer's DiffID in the source config ("" if the config lists none). A layer that another
// platform of the same index already converted is not converted again.
func (c *converter) layer(ctx context.Context, info types.BlobInfo, srcDiffID digest.Digest, b *bar) (r layerResult, err error) {
	if err := info.Digest.Validate(); err != nil {
		return layerResult{}, fmt.Errorf("layer digest: %w", err)
	}
	c.mu.Lock()
	r, ok := c.done[info.Digest]
	c.mu.Unlock()
	if ok {
		return r, nil
	}
	// An eStargz layer is copied as it is, unless files are to be prioritized: its
	// TOC order is then rebuilt (optimize works on eStargz sources too).
	if info.Annotations[tocDigestAnnotation] != "" && !c.zstdChunked() && len(c.opts.PrioritizedFiles) == 0 {
		r, err = c.passThrough(ctx, info, srcDiffID, b)
	} else {
		r, err = c.convertLayer(ctx, info, b)
	}
	if err != nil {
		return layerResult{}, err
	}
	if c.opts.KeepDiffID && srcDiffID != "" && r.diffID != srcDiffID {
		return layerResult{}, fmt.Errorf("converted layer has DiffID %s, not the source's %s", r.diffID, srcDiffID)
	}
	c.mu.Lock()
	c.done[info.Digest] = r
	c.mu.Unlock()
	return r, nil
}

// convertLayer downloads the layer, decompresses it into a temporary tar, builds the eStargz blob
// into a second temporary file and uploads that.
func (c *converter) convertLayer(ctx context.Context, info types.BlobInfo, b *bar) (layerResult, error) {
	tarFile, err := c.tempFile("layer-*.tar")
	if err != nil {
		return layerResult{}, err
	}
	defer removeTemp(tarFile)
	var tarSize int64
	err = c.download(ctx, info, b, func(br *bufio.Reader) error {
		tarSize, err = c.decompress(c.tempWriter(tarFile), br, info)
		return err
	})
	if err != nil {
		return layerResult{}, err
	}
	return c.buildAndUpload(ctx, info, tarFile, tarSize, b)
}

// convertBlob converts a layer blob already downloaded to blob[0:size].
func (c *converter) convertBlob(ctx context.Context, info types.BlobInfo, blob io.ReaderAt, size int64, b *bar) (layerResult, error) {
	tarFile, err := c.tempFile("layer-*.tar")
	if err != nil {
		return layerResult{}, err
	}
	defer removeTemp(tarFile)
	tarSize, err := c.decompress(c.tempWriter(tarFile), bufio.NewReader(io.NewSectionReader(blob, 0, size)), info)
	if err != nil {
		return layerResult{}, err
	}
	return c.buildAndUpload(ctx, info, tarFile, tarSize, b)
}

// decompress detects the compression of the blob in br and writes its tar to w.
func (c *converter) decompress(w io.Writer, br *bufio.Reader, info types.BlobInfo) (int64, error) {
	comp, err := detectCompression(br, info.MediaType)
	if err != nil {
		return 0, err
	}
	c.log.Debug("decompressing layer", layerAttrs(info), "compression", comp)
	n, err := decompress(w, br, comp)
	if err != nil {
		return 0, fmt.Errorf("decompress: %w", err)
	}
	return n, nil
}

// buildAndUpload builds the eStargz blob of the tar in tarFile[0:tarSize] and uploads it.
func (c *converter) buildAndUpload(ctx context.Context, info types.BlobInfo, tarFile *os.File, tarSize int64, b *bar) (layerResult, error) {
	if c.zstdChunked() {
		return c.buildZstdAndUpload(ctx, info, tarFile, tarSize, b)
	}
	blobFile, err := c.tempFile("layer-*.esgz")
	if err != nil {
		return layerResult{}, err
	}
	defer removeTemp(blobFile)
	b.setPhase("convert", -1)
	res, toc, err := c.buildLayer(ctx, b.writer(c.tempWriter(blobFile)), tarFile, tarSize)
	if err != nil {
		return layerResult{}, err
	}
	desc := ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageLayerGzip,
		Digest:    res.Digest,
		Size:      res.Size,
		Annotations: map[string]string{
			tocDigestAnnotation:        res.TOCDigest.String(),
			uncompressedSizeAnnotation: strconv.FormatInt(res.UncompressedSize, 10),
		},
	}
	if err := c.upload(ctx, blobFile, desc, b); err != nil {
		return layerResult{}, err
	}
	c.addTOC(toc, res.Digest)
	c.log.Info("converted layer", layerAttrs(info), "blob", res.Digest, "toc", res.TOCDigest)
	return layerResult{desc: desc, diffID: res.DiffID}, nil
}

// passThrough copies an eStargz layer unchanged. Its DiffID comes from the source config and its
// uncompressed size from the annotation; either is computed by decompressing the blob when the
// source lacks it. A downloaded blob whose TOC does not match its annotation is converted instead.
// A blob the destination already holds is trusted (content addressing) and not downloaded.
func (c *converter) passThrough(ctx context.Context, info types.BlobInfo, srcDiffID digest.Digest, b *bar) (layerResult, error) {
	desc := ocispec.Descriptor{
		MediaType:   ociMediaType(info.MediaType),
		Digest:      info.Digest,
		Size:        info.Size,
		Annotations: maps.Clone(info.Annotations),
	}
	_, sizeKnown := parseSize(info.Annotations[uncompressedSizeAnnotation])
	exists, reused, err := c.dst.TryReusingBlob(ctx, info, none.NoCache, false)
	if err != nil {
		return layerResult{}, classify("check destination blob", err)
	}
	if exists && sizeKnown && srcDiffID != "" {
		desc.Size = reused.Size
		c.log.Debug("layer already at destination", layerAttrs(info))
		return layerResult{desc: desc, diffID: srcDiffID}, nil
	}

	blobFile, err := c.tempFile("layer-*.esgz")
	if err != nil {
		return layerResult{}, err
	}
	defer removeTemp(blobFile)
	err = c.download(ctx, info, b, func(br *bufio.Reader) error {
		n, err := io.Copy(c.tempWriter(blobFile), br)
		desc.Size = n
		return err
	})
	if err != nil {
		return layerResult{}, err
	}
	toc := digest.Digest(info.Annotations[tocDigestAnnotation])
	if _, err := estargz.Open(ctx, blobFile, desc.Size, estargz.OpenOptions{TOCDigest: toc}); err != nil {
		if errors.Is(err, estargz.ErrExternalTOC) {
			// Its TOC is in another image; converting again gives the same entries.
			c.log.Info("layer has an external TOC; converting it again", layerAttrs(info))
		} else {
			c.log.Warn("layer annotated as eStargz does not match its TOC digest; converting it", layerAttrs(info), "err", err)
		}
		return c.convertBlob(ctx, info, blobFile, desc.Size, b)
	}
	if !sizeKnown || srcDiffID == "" {
		h := digest.SHA256.Digester()
		n, err := decompress(h.Hash(), bufio.NewReader(io.NewSectionReader(blobFile, 0, desc.Size)), gzipped)
		if err != nil {
			return layerResult{}, fmt.Errorf("decompress: %w", err)
		}
		desc.Annotations[uncompressedSizeAnnotation] = strconv.FormatInt(n, 10)
		srcDiffID = h.Digest()
	}
	if !exists {
		if err := c.upload(ctx, blobFile, desc, b); err != nil {
			return layerResult{}, err
		}
	}
	c.log.Info("copied estargz layer", layerAttrs(info))
	return layerResult{desc: desc, diffID: srcDiffID}, nil
}

// download streams a blob from the source into fn and checks its digest once fn returned;
// fn must read the reader to its end.
func (c *converter) download(ctx context.Context, info types.BlobInfo, b *bar, fn func(*bufio.Reader) error) error {
	rc, _, err := c.src.GetBlob(ctx, info, none.NoCache)
	if err != nil {
		return classify("fetch blob", err)
	}
	defer rc.Close()
	b.setPhase("download", info.Size)
	verifier := info.Digest.Verifier()
	br := bufio.NewReaderSize(io.TeeReader(b.reader(rc), verifier), 1<<20)
	if err := fn(br); err != nil {
		return fmt.Errorf("fetch blob: %w", err)
	}
	if !verifier.Verified() {
		return fmt.Errorf("fetch blob: content does not match digest %s", info.Digest)
	}
	return nil
}

// upload pushes the blob in f (from its start) as desc.
func (c *converter) upload(ctx context.Context, f *os.File, desc ocispec.Descriptor, b *bar) error {
	b.setPhase("upload", desc.Size)
	info := types.BlobInfo{Digest: desc.Digest, Size: desc.Size, MediaType: desc.MediaType}
	if _, err := c.dst.PutBlob(ctx, b.reader(io.NewSectionReader(f, 0, desc.Size)), info, none.NoCache, false); err != nil {
		return classify("upload blob "+desc.Digest.String(), err)
	}
	return nil
}

// tempFile creates a temporary file under opts.TempDir; removeTemp disposes of it.
func (c *converter) tempFile(pattern string) (*os.File, error) {
	f, err := os.CreateTemp(c.opts.TempDir, "stargz-convert-"+pattern)
	if err != nil {
		return nil, fmt.Errorf("create temporary file: %w", err)
	}
	return f, nil
}

// tempWriter is how conversion writes a temporary file; Options.tempWriter can inject failures
// (a full disk) in tests.
func (c *converter) tempWriter(f *os.File) io.Writer {
	if c.opts.tempWriter != nil {
		return c.opts.tempWriter(f)
	}
	return f
}

func removeTemp(f *os.File) {
	_ = f.Close()
	_ = os.Remove(f.Name())
}

// ociMediaType maps Docker schema 2 layer media types to their OCI equivalents, since the
// destination manifest is always OCI.
func ociMediaType(mt string) string {
	switch mt {
	case manifest.DockerV2Schema2LayerMediaType:
		return ocispec.MediaTypeImageLayerGzip
	case manifest.DockerV2Schema2ForeignLayerMediaTypeGzip:
		//lint:ignore SA1019 the OCI twin of a Docker foreign layer: a foreign source layer keeps its kind
		return ocispec.MediaTypeImageLayerNonDistributableGzip
	case "":
		return ocispec.MediaTypeImageLayerGzip
	}
	return mt
}

// parseSize parses a decimal, non-negative size annotation.
func parseSize(s string) (int64, bool) {
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n >= 0
}

// layerAttrs describes a source layer in log records.
func layerAttrs(info types.BlobInfo) slog.Attr {
	return slog.Group("layer", "digest", info.Digest, "size", info.Size, "mediaType", info.MediaType)
}
