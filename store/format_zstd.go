// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/stargz-store/stargz-store/store/index"
	"github.com/stargz-store/stargz-store/store/zstdchunked"
)

// openZstdChunked is the opener of FormatZstdChunked: the TOC is found
// through the descriptor's annotations (or the blob's footer) and verified
// against desc.TOCDigest, the manifest-checksum annotation. No annotation
// gives the uncompressed size, which Podman 4 needs in `info` (without it
// the pulled image has no size and cannot run), so the tar-split, which
// follows the TOC, is read in the same request to compute it.
func openZstdChunked(ctx context.Context, r io.ReaderAt, desc LayerDesc, opts LayerOptions) (*opened, error) {
	b, err := zstdchunked.Open(ctx, r, desc.Size, zstdchunked.OpenOptions{
		TOCDigest:        desc.TOCDigest,
		Annotations:      desc.Annotations,
		MaxTOCSize:       opts.MaxTOCSize,
		UncompressedSize: desc.UncompressedSize < 0,
	})
	if err != nil {
		return nil, classifyZstdChunked(err)
	}
	return &opened{index: b.Index, decode: decodeZstdChunked, compression: compressionZstd, uncompressedSize: b.UncompressedSize}, nil
}

func decodeZstdChunked(dst, compressed []byte, c index.Chunk) error {
	if err := zstdchunked.DecodeChunk(dst, compressed, c); err != nil {
		return classifyZstdChunked(err)
	}
	return nil
}

// classifyZstdChunked sorts zstdchunked errors into the store's classes,
// as classifyEStargz does for eStargz.
func classifyZstdChunked(err error) error {
	switch {
	case errors.Is(err, zstdchunked.ErrVerify):
		return fmt.Errorf("%w: %w", ErrVerify, err)
	case errors.Is(err, zstdchunked.ErrNotZstdChunked), errors.Is(err, zstdchunked.ErrTooLarge),
		errors.Is(err, index.ErrInvalid):
		return fmt.Errorf("%w: %w", ErrNotLazy, err)
	}
	return err
}
