// SPDX-License-Identifier: Apache-2.0

package zstdchunked

import (
	"context"
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
	// UncompressedSize asks Open to also read the tar-split (one more
	// range, or none when it follows the TOC, as writers put it) to learn
	// the uncompressed size of the layer, which zstd:chunked annotations
	// do not give. Podman 4 needs it (the `info` diff-size).
	UncompressedSize bool
	// MaxTarSplitSize bounds the decompressed tar-split; 0 means
	// DefaultMaxTarSplitSize.
	MaxTarSplitSize int64
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
	// UncompressedSize is the size of the layer's tar, from the verified
	// tar-split when OpenOptions.UncompressedSize asked for it; -1 when
	// unknown (not asked, or the blob has no tar-split).
	UncompressedSize int64
}

// Open locates the TOC of the zstd:chunked blob of the given size in r
// (from opts.Annotations, else from the footer), verifies the compressed
// TOC against opts.TOCDigest, decompresses and indexes it. It stops with
// ctx's error when ctx is done while it parses the TOC or scans the
// tar-split; the ReadAt calls are r's to bound, and decompressing the TOC
// (at most MaxTOCSize) is one uninterrupted call.
//
// Errors wrap ErrNotZstdChunked (no position, or no TOC where it points),
// ErrTooLarge, ErrVerify (the TOC is not the one the descriptor names), or
// index.ErrInvalid (a verified TOC that describes an impossible tree).
// Open allocates no more than the compressed TOC and a bounded multiple of
// MaxTOCSize, whatever the blob says.
func Open(ctx context.Context, r io.ReaderAt, size int64, opts OpenOptions) (*Blob, error) {
	lim, err := opts.limits()
	if err != nil {
		return nil, err
	}
	pos, tsPos, fromFooter, err := locateTOC(r, size, opts.Annotations)
	if err != nil {
		return nil, err
	}
	if err := checkPosition(pos, size, lim.maxTOC); err != nil {
		return nil, err
	}
	var tarSplit []byte
	if !opts.UncompressedSize || checkTarSplit(tsPos, pos, size, lim.maxTarSplit) != nil {
		tsPos = Position{} // not wanted, or not where a writer puts it: size unknown
	}
	// Writers put the tar-split right after the TOC: one read for both.
	region := make([]byte, max(pos.End(), tsPos.End())-pos.Offset)
	if err := readFull(r, region, pos.Offset); err != nil {
		return nil, fmt.Errorf("read TOC at %d: %w", pos.Offset, err)
	}
	compressed := region[:pos.Length]
	if tsPos.Length > 0 {
		tarSplit = region[tsPos.Offset-pos.Offset:]
	}
	if got := opts.TOCDigest.Algorithm().FromBytes(compressed); got != opts.TOCDigest {
		return nil, fmt.Errorf("%w: compressed TOC has digest %s, want %s", ErrVerify, got, opts.TOCDigest)
	}
	tocJSON, err := decodeTOC(compressed, pos.UncompressedLength)
	if err != nil {
		return nil, fmt.Errorf("TOC at %d: %w", pos.Offset, err)
	}
	// The TOC's skippable frame header is the first byte no chunk may use.
	ix, tsDigest, err := parseTOC(ctx, tocJSON, pos.Offset-skippableHeaderSize)
	if err != nil {
		return nil, fmt.Errorf("TOC %s: %w", opts.TOCDigest, err)
	}
	b := &Blob{Index: ix, TOCDigest: opts.TOCDigest, TOC: pos, FromFooter: fromFooter, UncompressedSize: -1}
	if tarSplit != nil && tsDigest != "" {
		if b.UncompressedSize, err = tarSize(ctx, tarSplit, tsDigest, lim.maxTarSplit); err != nil {
			return nil, fmt.Errorf("TOC %s: %w", opts.TOCDigest, err)
		}
	}
	return b, nil
}

// checkTarSplit reports whether the tar-split position is usable: after
// the TOC (where every writer puts it) and inside the blob and the limit.
func checkTarSplit(ts, toc Position, size, maxTarSplit int64) error {
	switch {
	case ts.Length == 0 || ts.UncompressedLength == 0:
		return errors.New("no tar-split")
	case ts.UncompressedLength > maxTarSplit || ts.Length > maxCompressedTOC(maxTarSplit):
		return fmt.Errorf("%w: tar-split of %d bytes", ErrTooLarge, ts.UncompressedLength)
	case ts.Offset < toc.End() || ts.Offset > size || ts.Length > size-ts.Offset:
		return fmt.Errorf("%w: tar-split [%d, +%d) outside the blob after the TOC", ErrNotZstdChunked, ts.Offset, ts.Length)
	case ts.End()-toc.End() > 1<<20:
		return errors.New("tar-split far from the TOC")
	}
	return nil
}

type limits struct{ maxTOC, maxTarSplit int64 }

func (o OpenOptions) limits() (limits, error) {
	if o.TOCDigest == "" {
		return limits{}, errors.New("open zstd:chunked: no TOC digest given")
	}
	if err := o.TOCDigest.Validate(); err != nil {
		return limits{}, fmt.Errorf("open zstd:chunked: TOC digest %q: %w", o.TOCDigest, err)
	}
	if o.MaxTOCSize < 0 || o.MaxTarSplitSize < 0 {
		return limits{}, fmt.Errorf("open zstd:chunked: negative limit (MaxTOCSize %d, MaxTarSplitSize %d)",
			o.MaxTOCSize, o.MaxTarSplitSize)
	}
	l := limits{maxTOC: o.MaxTOCSize, maxTarSplit: o.MaxTarSplitSize}
	if l.maxTarSplit == 0 {
		l.maxTarSplit = DefaultMaxTarSplitSize
	}
	if l.maxTOC == 0 {
		l.maxTOC = DefaultMaxTOCSize
	}
	return l, nil
}

// locateTOC returns the TOC and tar-split positions from the annotations
// or, when they give no TOC position, from the footer. A tar-split
// position that is missing or malformed is zero: it is optional.
func locateTOC(r io.ReaderAt, size int64, annotations map[string]string) (toc, tarSplit Position, fromFooter bool, err error) {
	if s, ok := annotations[ManifestPositionAnnotation]; ok {
		toc, err := ParsePosition(s)
		if ts, ok := annotations[TarSplitPositionAnnotation]; ok {
			tarSplit, _ = ParseTarSplitPosition(ts)
		}
		return toc, tarSplit, false, err
	}
	if size < FooterSize+skippableHeaderSize {
		return Position{}, Position{}, false, fmt.Errorf("%w: %d bytes is too small for a footer", ErrNotZstdChunked, size)
	}
	tail := make([]byte, FooterSize+skippableHeaderSize)
	if err := readFull(r, tail, size-int64(len(tail))); err != nil {
		return Position{}, Position{}, false, fmt.Errorf("read footer: %w", err)
	}
	f, err := ParseFooter(tail)
	if err != nil {
		return Position{}, Position{}, false, err
	}
	return f.TOC, f.TarSplit, true, nil
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
