// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// compression is the detected encoding of a layer blob.
type compression int

const (
	uncompressed compression = iota
	gzipped
	zstded
)

func (c compression) String() string {
	switch c {
	case gzipped:
		return "gzip"
	case zstded:
		return "zstd"
	default:
		return "none"
	}
}

var (
	gzipMagic  = []byte{0x1f, 0x8b}
	zstdMagic  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	bzip2Magic = []byte("BZh")
	xzMagic    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
)

// detectCompression looks at the first bytes of a blob. The magic bytes decide, because registries
// and old tools mislabel layers; the media type only rules out what can never be converted.
func detectCompression(br *bufio.Reader, mediaType string) (compression, error) {
	if strings.Contains(mediaType, "encrypted") {
		return 0, fmt.Errorf("encrypted layer (%s): %w", mediaType, ErrUnsupported)
	}
	head, err := br.Peek(6)
	if err != nil && err != io.EOF && err != bufio.ErrBufferFull {
		return 0, err
	}
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		return gzipped, nil
	case bytes.HasPrefix(head, zstdMagic) || isZstdSkippable(head):
		return zstded, nil
	case bytes.HasPrefix(head, bzip2Magic):
		return 0, fmt.Errorf("bzip2 layer: %w", ErrUnsupported)
	case bytes.HasPrefix(head, xzMagic):
		return 0, fmt.Errorf("xz layer: %w", ErrUnsupported)
	}
	return uncompressed, nil
}

// isZstdSkippable reports a zstd skippable frame (magic 0x184D2A50..0x184D2A5F, little endian),
// which a zstd:chunked blob may start with.
func isZstdSkippable(head []byte) bool {
	return len(head) >= 4 && head[0]&0xf0 == 0x50 && head[1] == 0x2a && head[2] == 0x4d && head[3] == 0x18
}

// decompress writes the decoded form of the blob in br to w and returns the number of bytes
// written. It reads br to its end, so that a digest computed over br covers the whole blob.
func decompress(w io.Writer, br *bufio.Reader, c compression) (int64, error) {
	var (
		n   int64
		err error
	)
	switch c {
	case gzipped:
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(br); err != nil {
			return 0, fmt.Errorf("gzip: %w", err)
		}
		n, err = io.Copy(w, zr)
		if err != nil {
			return n, fmt.Errorf("gzip: %w", err)
		}
		if err = zr.Close(); err != nil {
			return n, fmt.Errorf("gzip: %w", err)
		}
	case zstded:
		var zr *zstd.Decoder
		if zr, err = zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true)); err != nil {
			return 0, fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		if n, err = io.Copy(w, zr); err != nil {
			return n, fmt.Errorf("zstd: %w", err)
		}
	default:
		if n, err = io.Copy(w, br); err != nil {
			return n, err
		}
	}
	// Trailing bytes after the compressed stream still belong to the blob's digest.
	if _, err := io.Copy(io.Discard, br); err != nil {
		return n, err
	}
	return n, nil
}
