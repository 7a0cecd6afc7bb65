// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/stargz-store/stargz-store/store/estargz"
	"github.com/stargz-store/stargz-store/store/index"
)

// Format names a lazily servable layer format.
type Format string

// The layer formats the store knows.
const (
	FormatEStargz     Format = "estargz"
	FormatZstdChunked Format = "zstd:chunked"
)

// Compression values of containers/storage's archive.Compression, as the
// `info` file reports them.
const (
	compressionGzip = 2
	compressionZstd = 4
)

// opened is what a format's reader gives a Layer: the index, how to turn
// one chunk's compressed bytes into verified content, and hints. The rest
// of the store never branches on format.
type opened struct {
	index *index.Index
	// decode fills dst (len == c.Size) from compressed, which holds the
	// blob range [c.CompressedOffset, c.CompressedEnd), and verifies it.
	// Its errors wrap ErrVerify for bad content.
	decode func(dst, compressed []byte, c index.Chunk) error
	// prefetchEnd > 0 asks to prefetch the blob range [0, prefetchEnd).
	prefetchEnd int64
	// compression is the blob's containers/storage compression value.
	compression int
	// uncompressedSize > 0 is the layer's tar size as the format found
	// it, for a descriptor that does not give it (zstd:chunked).
	uncompressedSize int64
}

// openFunc reads a layer's table of contents through r and verifies it
// against desc.TOCDigest. Errors wrap ErrNotLazy for a layer that can be
// read but not served lazily, ErrVerify for a TOC that does not match. It
// stops with ctx's error when ctx (the resolve timeout) is done, parsing
// included.
type openFunc func(ctx context.Context, r io.ReaderAt, desc LayerDesc, opts LayerOptions) (*opened, error)

// openers maps each format to its reader.
var openers = map[Format]openFunc{
	FormatEStargz:     openEStargz,
	FormatZstdChunked: openZstdChunked,
}

func openEStargz(ctx context.Context, r io.ReaderAt, desc LayerDesc, opts LayerOptions) (*opened, error) {
	oo := estargz.OpenOptions{TOCDigest: desc.TOCDigest, MaxTOCSize: opts.MaxTOCSize}
	b, err := estargz.Open(ctx, r, desc.Size, oo)
	if errors.Is(err, estargz.ErrExternalTOC) && opts.ExternalTOC != nil {
		b, err = openExternal(ctx, r, desc, opts, oo)
	}
	if err != nil {
		return nil, classifyEStargz(err)
	}
	if b.BadLandmark != nil && opts.Logger != nil {
		// Kinder than refusing the layer: it is served, without prefetch.
		opts.Logger.Warn("prefetch landmark ignored", "digest", desc.Digest.String(), "err", b.BadLandmark)
	}
	return &opened{index: b.Index, decode: decodeEStargz, prefetchEnd: b.PrefetchEnd, compression: compressionGzip}, nil
}

// openExternal opens a blob whose footer says its TOC lives in the image's
// TOC image. Not finding the TOC makes the layer not lazy: storage pulls it.
func openExternal(ctx context.Context, r io.ReaderAt, desc LayerDesc, opts LayerOptions, oo estargz.OpenOptions) (*estargz.Blob, error) {
	toc, err := opts.ExternalTOC(desc)
	if err != nil {
		return nil, fmt.Errorf("%w: external TOC: %w", ErrNotLazy, err)
	}
	return estargz.OpenExternal(ctx, r, desc.Size, toc, oo)
}

func decodeEStargz(dst, compressed []byte, c index.Chunk) error {
	if err := estargz.DecodeChunk(dst, compressed, c); err != nil {
		return classifyEStargz(err)
	}
	return nil
}

// classifyEStargz sorts estargz errors into the store's classes: a blob we
// can read but refuse is not lazy; bytes that fail their digest are
// ErrVerify; anything else (a failed fetch) stays as it is.
func classifyEStargz(err error) error {
	switch {
	case errors.Is(err, estargz.ErrVerify):
		return fmt.Errorf("%w: %w", ErrVerify, err)
	case errors.Is(err, estargz.ErrNotEStargz), errors.Is(err, estargz.ErrExternalTOC),
		errors.Is(err, estargz.ErrTooLarge), errors.Is(err, index.ErrInvalid):
		return fmt.Errorf("%w: %w", ErrNotLazy, err)
	}
	return err
}
