// SPDX-License-Identifier: Apache-2.0

package zstdchunked

import (
	"context"
	"fmt"
	"io"
	"maps"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/storage/pkg/chunked/compressor"
)

// MediaType is the OCI media type of a zstd:chunked layer: to a runtime
// that knows nothing of chunks it is an ordinary zstd tar.
const MediaType = "application/vnd.oci.image.layer.v1.tar+zstd"

// BuildOptions configures Build. The zero value is usable.
type BuildOptions struct {
	// Level is the zstd level; 0 means containers/storage's default.
	Level int
}

// BuildResult describes a blob Build wrote.
type BuildResult struct {
	Digest           digest.Digest // sha256 of the blob written
	Size             int64         // blob size
	TOCDigest        digest.Digest // the manifest-checksum annotation
	DiffID           digest.Digest // sha256 of the uncompressed tar
	UncompressedSize int64
	// Annotations are the layer descriptor annotations the compressor
	// produced (manifest checksum and position, tar-split position).
	Annotations map[string]string
}

// Build compresses the tar read from tar into a zstd:chunked blob written
// to w, with containers/storage's own compressor, so that the blob and its
// annotations are what Podman pushes. The tar must be complete (with its
// end blocks): the blob decompresses to exactly the bytes read, which is
// what DiffID hashes. Build stops with ctx's error when ctx is done.
func Build(ctx context.Context, w io.Writer, tar io.Reader, opts BuildOptions) (BuildResult, error) {
	var level *int
	if opts.Level != 0 {
		level = &opts.Level
	}
	out := &countingWriter{w: w, d: digest.Canonical.Digester()}
	in := &countingReader{ctx: ctx, r: tar, d: digest.Canonical.Digester()}
	meta := map[string]string{}
	zw, err := compressor.ZstdCompressor(out, meta, level)
	if err != nil {
		return BuildResult{}, fmt.Errorf("zstd:chunked compressor: %w", err)
	}
	if _, err := io.Copy(zw, in); err != nil {
		zw.Close() // ends the compressor's goroutine; the copy's error is the one to report
		return BuildResult{}, fmt.Errorf("compress tar: %w", err)
	}
	if err := zw.Close(); err != nil {
		return BuildResult{}, fmt.Errorf("compress tar: %w", err)
	}
	if out.err != nil {
		return BuildResult{}, fmt.Errorf("write blob: %w", out.err)
	}
	toc, err := digest.Parse(meta[ManifestChecksumAnnotation])
	if err != nil {
		return BuildResult{}, fmt.Errorf("compressor gave manifest checksum %q: %w", meta[ManifestChecksumAnnotation], err)
	}
	return BuildResult{
		Digest:           out.d.Digest(),
		Size:             out.n,
		TOCDigest:        toc,
		DiffID:           in.d.Digest(),
		UncompressedSize: in.n,
		Annotations:      maps.Clone(meta),
	}, nil
}

// countingWriter hashes and counts what goes to w, and remembers the first
// write error.
type countingWriter struct {
	w   io.Writer
	d   digest.Digester
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.d.Hash().Write(p[:n])
	c.n += int64(n)
	c.err = err
	return n, err
}

// countingReader hashes and counts what is read from r, and fails once
// ctx is done.
type countingReader struct {
	ctx context.Context
	r   io.Reader
	d   digest.Digester
	n   int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.d.Hash().Write(p[:n])
	c.n += int64(n)
	return n, err
}
