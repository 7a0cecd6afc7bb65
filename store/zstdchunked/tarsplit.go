// SPDX-License-Identifier: Apache-2.0

package zstdchunked

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/tar/storage"
)

// DefaultMaxTarSplitSize bounds the decompressed tar-split Open reads
// when OpenOptions.MaxTarSplitSize is 0. The tar-split spends about 150
// bytes per tar entry plus the raw headers.
const DefaultMaxTarSplitSize = 256 << 20

// ParseTarSplitPosition parses the tarsplit-position annotation,
// "offset:compressedLen:uncompressedLen". Errors wrap ErrNotZstdChunked.
func ParseTarSplitPosition(s string) (Position, error) {
	p, err := ParsePosition(s + ":1")
	if err != nil {
		return Position{}, fmt.Errorf("tar-split position %q: %w", s, err)
	}
	return p, nil
}

// tarSize returns the size of the uncompressed tar the tar-split
// describes: its raw segments (headers, padding, end blocks) plus the
// file payloads. compressed is the tar-split's zstd frame; want is the
// TOC's tarSplitDigest, the digest of those compressed bytes.
//
// The tar-split is streamed, never held decompressed, and read up to max
// bytes. Errors wrap ErrVerify (digest) or ErrNotZstdChunked; it stops
// with ctx's error when ctx is done.
func tarSize(ctx context.Context, compressed []byte, want digest.Digest, max int64) (int64, error) {
	if err := want.Validate(); err != nil {
		return 0, fmt.Errorf("%w: tarSplitDigest %q: %v", ErrNotZstdChunked, want, err)
	}
	if got := want.Algorithm().FromBytes(compressed); got != want {
		return 0, fmt.Errorf("%w: tar-split has digest %s, the TOC says %s", ErrVerify, got, want)
	}
	// A decoder of its own: streaming, synchronous with concurrency 1,
	// and closed before returning, so it leaves no goroutine behind.
	zr, err := zstd.NewReader(bytes.NewReader(compressed), zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxWindow(maxWindow), zstd.WithDecoderLowmem(true))
	if err != nil {
		return 0, fmt.Errorf("tar-split decoder: %w", err)
	}
	defer zr.Close()
	lr := &io.LimitedReader{R: zr, N: max + 1}
	up := storage.NewJSONUnpacker(lr)
	var n int64
	for i := 0; ; i++ {
		if i%ctxEvery == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
		e, err := up.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("%w: tar-split: %v", ErrNotZstdChunked, err)
		}
		var add int64
		switch e.Type {
		case storage.SegmentType:
			add = int64(len(e.Payload))
		case storage.FileType:
			add = e.Size
		default:
			return 0, fmt.Errorf("%w: tar-split entry of type %d", ErrNotZstdChunked, e.Type)
		}
		if add < 0 || add > math.MaxInt64-n {
			return 0, fmt.Errorf("%w: tar-split sizes overflow", ErrNotZstdChunked)
		}
		n += add
	}
	if lr.N <= 0 {
		return 0, fmt.Errorf("%w: tar-split larger than %d bytes", ErrTooLarge, max)
	}
	return n, nil
}
