// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/types"

	"github.com/stargz-store/stargz-store/store/zstdchunked"
)

// The layer formats Image writes (Options.Format).
const (
	// FormatEStargz writes eStargz layers (gzip); it is the default.
	FormatEStargz = "estargz"
	// FormatZstdChunked writes zstd:chunked layers, as `podman push
	// --compression-format zstd:chunked` does: a plain zstd layer to any
	// runtime, a partially pullable one to Podman 5, a lazily servable one
	// to stargz-store.
	FormatZstdChunked = "zstd:chunked"
)

// checkFormat refuses an unknown format and the options a format cannot honour.
func (o Options) checkFormat() error {
	switch o.Format {
	case "", FormatEStargz:
		return nil
	case FormatZstdChunked:
		if o.ExternalTOC {
			return errors.New("zstd:chunked has no external TOC (its TOC is already outside the tar)")
		}
		if len(o.PrioritizedFiles) > 0 {
			return errors.New("zstd:chunked has no prefetch landmarks: prioritized files apply to eStargz only")
		}
		return nil
	}
	return fmt.Errorf("unknown layer format %q (want %q or %q)", o.Format, FormatEStargz, FormatZstdChunked)
}

// zstdChunked reports whether layers are written as zstd:chunked.
func (c *converter) zstdChunked() bool { return c.opts.Format == FormatZstdChunked }

// buildZstdAndUpload builds the zstd:chunked blob of the tar in tarFile[0:tarSize] and uploads
// it. The tar of an eStargz source loses its TOC entry and landmarks, which are not content.
func (c *converter) buildZstdAndUpload(ctx context.Context, info types.BlobInfo, tarFile *os.File, tarSize int64, b *bar) (layerResult, error) {
	blobFile, err := c.tempFile("layer-*.zst")
	if err != nil {
		return layerResult{}, err
	}
	defer removeTemp(blobFile)
	b.setPhase("convert", -1)
	src := io.NewSectionReader(tarFile, 0, tarSize)
	var in io.Reader = src
	if info.Annotations[tocDigestAnnotation] != "" {
		pr, pw := io.Pipe()
		done := make(chan struct{})
		go func() { // owned here: the pipe's reader is closed below, which ends it
			defer close(done)
			pw.CloseWithError(stripEStargz(pw, src))
		}()
		defer func() { pr.Close(); <-done }()
		in = pr
	}
	res, err := zstdchunked.Build(ctx, b.writer(c.tempWriter(blobFile)), in, zstdchunked.BuildOptions{})
	if err != nil {
		return layerResult{}, fmt.Errorf("build zstd:chunked: %w", err)
	}
	desc := ocispec.Descriptor{
		MediaType:   zstdchunked.MediaType,
		Digest:      res.Digest,
		Size:        res.Size,
		Annotations: res.Annotations,
	}
	if err := c.upload(ctx, blobFile, desc, b); err != nil {
		return layerResult{}, err
	}
	c.log.Info("converted layer", layerAttrs(info), "blob", res.Digest, "toc", res.TOCDigest, "format", FormatZstdChunked)
	return layerResult{desc: desc, diffID: res.DiffID}, nil
}

// eStargzOnly are the tar entries an eStargz writer adds to a layer.
var eStargzOnly = map[string]bool{"stargz.index.json": true, ".prefetch.landmark": true, ".no.prefetch.landmark": true}

// stripEStargz copies the tar in r to w without the entries an eStargz writer added.
func stripEStargz(w io.Writer, r io.Reader) error {
	tr, tw := tar.NewReader(r), tar.NewWriter(w)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return tw.Close()
		}
		if err != nil {
			return fmt.Errorf("read eStargz tar: %w", err)
		}
		if eStargzOnly[cleanName(h.Name)] {
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("rewrite eStargz tar: %w", err)
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("rewrite eStargz tar: %w", err)
		}
	}
}
