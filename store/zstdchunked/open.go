// SPDX-License-Identifier: Apache-2.0

package zstdchunked

import (
	"errors"
	"fmt"
	"io"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store/index"
)

// Default limits of Open.
const (
	// DefaultMaxTOCSize is the decompressed TOC size Open accepts when
	// OpenOptions.MaxTOCSize is 0.
	DefaultMaxTOCSize = 64 << 20
	// DefaultMaxChunkSize is the largest data chunk Open accepts when
	// OpenOptions.MaxChunkSize is 0. The rolling checksum cuts files
	// every 64 KiB or so; only long runs of repetitive data make larger
	// chunks, and a reader holds a whole chunk in memory.
	DefaultMaxChunkSize = 512 << 20
)

// OpenOptions configures Open. The zero value is not usable: TOCDigest is
// required.
type OpenOptions struct {
	// TOCDigest is the expected sha256 of the compressed TOC, from the
	// layer descriptor's manifest-checksum annotation. It is required: a
	// TOC is never trusted without it.
	TOCDigest digest.Digest
	// Annotations are the layer descriptor's annotations. When they hold
	// ManifestPositionAnnotation, Open reads the TOC from there; otherwise
	// it reads the footer first.
	Annotations map[string]string
	// MaxTOCSize bounds the decompressed TOC, and with it the memory Open
	// uses; 0 means DefaultMaxTOCSize.
	MaxTOCSize int64
	// MaxChunkSize bounds a data chunk's uncompressed size; 0 means
	// DefaultMaxChunkSize.
	MaxChunkSize int64
}

// Blob is an opened zstd:chunked layer: its verified table of contents and
// where the TOC is. It is immutable and safe for concurrent use.
type Blob struct {
	// Index is the layer's tree. Every regular file's chunks carry the
	// digests DecodeChunk verifies, or are Zero.
	Index *index.Index
	// TOCDigest is the verified digest of the compressed TOC.
	TOCDigest digest.Digest
	// TOC is where the compressed TOC lies; every chunk's compressed range
	// ends before it.
	TOC Position
	// FromFooter reports that the TOC was located through the footer
	// because the annotations did not give its position.
	FromFooter bool
}

// Open locates the TOC of the zstd:chunked blob of the given size in r
// (from opts.Annotations, else from the footer), verifies the compressed
// TOC against opts.TOCDigest, decompresses and indexes it.
//
// Errors wrap ErrNotZstdChunked (no position, or no TOC where it points),
// ErrTooLarge, ErrVerify (the TOC is not the one the descriptor names), or
// index.ErrInvalid (a verified TOC that describes an impossible tree).
// Open allocates no more than the compressed TOC and a bounded multiple of
// MaxTOCSize, whatever the blob says.
func Open(r io.ReaderAt, size int64, opts OpenOptions) (*Blob, error) {
	lim, err := opts.limits()
	if err != nil {
		return nil, err
	}
	pos, fromFooter, err := locateTOC(r, size, opts.Annotations)
	if err != nil {
		return nil, err
	}
	if err := checkPosition(pos, size, lim.maxTOC); err != nil {
		return nil, err
	}
	compressed := make([]byte, pos.Length)
	if err := readFull(r, compressed, pos.Offset); err != nil {
		return nil, fmt.Errorf("read TOC at %d: %w", pos.Offset, err)
	}
	if got := opts.TOCDigest.Algorithm().FromBytes(compressed); got != opts.TOCDigest {
		return nil, fmt.Errorf("%w: compressed TOC has digest %s, want %s", ErrVerify, got, opts.TOCDigest)
	}
	tocJSON, err := decodeTOC(compressed, pos.UncompressedLength)
	if err != nil {
		return nil, fmt.Errorf("TOC at %d: %w", pos.Offset, err)
	}
	// The TOC's skippable frame header is the first byte no chunk may use.
	ix, err := parseTOC(tocJSON, pos.Offset-skippableHeaderSize, lim.maxChunk)
	if err != nil {
		return nil, fmt.Errorf("TOC %s: %w", opts.TOCDigest, err)
	}
	return &Blob{Index: ix, TOCDigest: opts.TOCDigest, TOC: pos, FromFooter: fromFooter}, nil
}

type limits struct{ maxTOC, maxChunk int64 }

func (o OpenOptions) limits() (limits, error) {
	if o.TOCDigest == "" {
		return limits{}, errors.New("open zstd:chunked: no TOC digest given")
	}
	if err := o.TOCDigest.Validate(); err != nil {
		return limits{}, fmt.Errorf("open zstd:chunked: TOC digest %q: %w", o.TOCDigest, err)
	}
	if o.MaxTOCSize < 0 || o.MaxChunkSize < 0 {
		return limits{}, fmt.Errorf("open zstd:chunked: negative limit (MaxTOCSize %d, MaxChunkSize %d)", o.MaxTOCSize, o.MaxChunkSize)
	}
	l := limits{maxTOC: o.MaxTOCSize, maxChunk: o.MaxChunkSize}
	if l.maxTOC == 0 {
		l.maxTOC = DefaultMaxTOCSize
	}
	if l.maxChunk == 0 {
		l.maxChunk = DefaultMaxChunkSize
	}
	return l, nil
}

// locateTOC returns the TOC position from the annotations or, when they
// give none, from the footer.
func locateTOC(r io.ReaderAt, size int64, annotations map[string]string) (Position, bool, error) {
	if s, ok := annotations[ManifestPositionAnnotation]; ok {
		pos, err := ParsePosition(s)
		return pos, false, err
	}
	if size < FooterSize+skippableHeaderSize {
		return Position{}, false, fmt.Errorf("%w: %d bytes is too small for a footer", ErrNotZstdChunked, size)
	}
	tail := make([]byte, FooterSize+skippableHeaderSize)
	if err := readFull(r, tail, size-int64(len(tail))); err != nil {
		return Position{}, false, fmt.Errorf("read footer: %w", err)
	}
	f, err := ParseFooter(tail)
	if err != nil {
		return Position{}, false, err
	}
	return f.TOC, true, nil
}

// maxCompressedTOC bounds the compressed TOC for a decompressed limit:
// zstd stores incompressible data in raw blocks, which cost 3 bytes per
// 128 KiB block, plus the frame header and checksum.
func maxCompressedTOC(maxTOC int64) int64 { return maxTOC + maxTOC/1024 + 1024 }

// checkPosition refuses a TOC position outside the blob or over the limits.
func checkPosition(pos Position, size, maxTOC int64) error {
	switch {
	case pos.UncompressedLength > maxTOC:
		return fmt.Errorf("%w: TOC of %d bytes, limit %d", ErrTooLarge, pos.UncompressedLength, maxTOC)
	case pos.Length > maxCompressedTOC(maxTOC):
		return fmt.Errorf("%w: compressed TOC of %d bytes, limit %d", ErrTooLarge, pos.Length, maxCompressedTOC(maxTOC))
	case pos.Length == 0 || pos.UncompressedLength == 0:
		return fmt.Errorf("%w: empty TOC", ErrNotZstdChunked)
	case pos.Offset < skippableHeaderSize || pos.Offset > size || pos.Length > size-pos.Offset:
		return fmt.Errorf("%w: TOC [%d, +%d) outside the %d-byte blob", ErrNotZstdChunked, pos.Offset, pos.Length, size)
	}
	return nil
}

// decodeTOC decompresses the TOC, which must inflate to exactly n bytes.
func decodeTOC(compressed []byte, n int64) ([]byte, error) {
	out, err := decoder().DecodeAll(compressed, make([]byte, 0, n))
	if err != nil {
		return nil, fmt.Errorf("%w: TOC does not decompress: %v", ErrNotZstdChunked, err)
	}
	if int64(len(out)) != n {
		return nil, fmt.Errorf("%w: TOC decompresses to %d bytes, the position says %d", ErrNotZstdChunked, len(out), n)
	}
	return out, nil
}

// readFull is one ReadAt that must fill p; io.EOF with a full p is fine,
// as io.ReaderAt allows at the end of the input.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return err
}
