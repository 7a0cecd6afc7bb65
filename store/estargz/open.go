// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store/index"
)

// DefaultMaxTOCSize is the decompressed TOC size Open accepts when
// OpenOptions.MaxTOCSize is 0.
const DefaultMaxTOCSize = 64 << 20

// OpenOptions configures Open. The zero value is not usable: TOCDigest is
// required.
type OpenOptions struct {
	// TOCDigest is the expected digest of the TOC JSON, from the layer
	// descriptor's containerd.io/snapshot/stargz/toc.digest annotation.
	// It is required: a TOC is never trusted without it.
	TOCDigest digest.Digest
	// MaxTOCSize bounds the decompressed TOC JSON, and with it the memory
	// Open uses; 0 means DefaultMaxTOCSize.
	MaxTOCSize int64
}

// Blob is an opened eStargz layer: its verified table of contents and
// where things are in the blob. It is immutable and safe for concurrent
// use.
type Blob struct {
	// Index is the layer's tree. Every regular file's chunks carry the
	// digests DecodeChunk verifies.
	Index *index.Index
	// TOCDigest is the verified digest of the TOC JSON.
	TOCDigest digest.Digest
	// TOCOffset is the blob offset of the TOC's gzip member; every chunk's
	// compressed range ends at or before it.
	TOCOffset int64
	// FooterSize is the size of the footer that ends the blob.
	FooterSize int64
	// PrefetchEnd, when > 0, is the offset of the .prefetch.landmark
	// payload: the prioritized files lie in [0, PrefetchEnd) and are worth
	// fetching in one request. 0 means no landmark.
	PrefetchEnd int64
	// NoPrefetch reports a .no.prefetch.landmark: the layer asks not to be
	// prefetched.
	NoPrefetch bool
	// BadLandmark, when not nil, says why a .prefetch.landmark was
	// ignored: its offset lies outside the data region [0, TOCOffset].
	// PrefetchEnd is then 0; the layer is still served, without prefetch.
	BadLandmark error
}

// Open reads the footer and the TOC of the eStargz blob of the given size
// in r, verifies the TOC against opts.TOCDigest and indexes it. It makes
// exactly two ReadAt calls: the footer, then the TOC member. It stops with
// ctx's error when ctx is done while it decompresses or parses the TOC;
// the ReadAt calls are r's to bound.
//
// Errors wrap ErrNotEStargz (no footer, or no TOC where it points),
// ErrExternalTOC, ErrTooLarge, ErrVerify (the TOC is not the one the
// descriptor names), or index.ErrInvalid (a verified TOC that describes an
// impossible tree). Open allocates no more than the TOC region and a
// bounded multiple of MaxTOCSize, whatever the blob says.
func Open(ctx context.Context, r io.ReaderAt, size int64, opts OpenOptions) (*Blob, error) {
	maxTOC, err := opts.check()
	if err != nil {
		return nil, err
	}
	f, err := readFooter(r, size)
	if err != nil {
		return nil, err
	}
	tocEnd := size - f.Size
	if f.TOCOffset >= tocEnd {
		return nil, fmt.Errorf("%w: TOC offset %d outside the %d-byte blob", ErrNotEStargz, f.TOCOffset, size)
	}
	if tocEnd-f.TOCOffset > maxCompressedTOC(maxTOC) {
		return nil, fmt.Errorf("%w: compressed TOC of %d bytes, limit %d", ErrTooLarge, tocEnd-f.TOCOffset, maxCompressedTOC(maxTOC))
	}
	region := make([]byte, tocEnd-f.TOCOffset)
	if err := readFull(r, region, f.TOCOffset); err != nil {
		return nil, fmt.Errorf("read TOC at %d: %w", f.TOCOffset, err)
	}
	tocJSON, got, err := tocJSONFrom(ctx, region, maxTOC, opts.TOCDigest.Algorithm())
	if err != nil {
		return nil, fmt.Errorf("TOC at %d: %w", f.TOCOffset, err)
	}
	if got != opts.TOCDigest {
		return nil, fmt.Errorf("%w: TOC JSON has digest %s, want %s", ErrVerify, got, opts.TOCDigest)
	}
	return newBlob(ctx, tocJSON, f.TOCOffset, f.Size, opts.TOCDigest)
}

// newBlob parses verified TOC JSON whose chunks must end at or before
// tocOffset.
func newBlob(ctx context.Context, tocJSON string, tocOffset, footerSize int64, tocDigest digest.Digest) (*Blob, error) {
	res, err := parseTOC(ctx, tocJSON, tocOffset)
	if err != nil {
		return nil, fmt.Errorf("TOC %s: %w", tocDigest, err)
	}
	return &Blob{
		Index:       res.index,
		TOCDigest:   tocDigest,
		TOCOffset:   tocOffset,
		FooterSize:  footerSize,
		PrefetchEnd: res.prefetchEnd,
		NoPrefetch:  res.noPrefetch,
		BadLandmark: res.badLandmark,
	}, nil
}

func (o OpenOptions) check() (maxTOC int64, err error) {
	if o.TOCDigest == "" {
		return 0, errors.New("open eStargz: no TOC digest given")
	}
	if err := o.TOCDigest.Validate(); err != nil {
		return 0, fmt.Errorf("open eStargz: TOC digest %q: %w", o.TOCDigest, err)
	}
	switch {
	case o.MaxTOCSize < 0:
		return 0, fmt.Errorf("open eStargz: MaxTOCSize %d", o.MaxTOCSize)
	case o.MaxTOCSize == 0:
		return DefaultMaxTOCSize, nil
	}
	return o.MaxTOCSize, nil
}

// maxCompressedTOC bounds the TOC member for a decompressed limit: deflate
// never grows data by more than 5 bytes per 64 KiB stored block, and the
// member also holds the gzip header and the tar headers and end blocks.
func maxCompressedTOC(maxTOC int64) int64 { return maxTOC + maxTOC/1024 + 64<<10 }

// readFooter reads and parses the blob's tail with one ReadAt.
func readFooter(r io.ReaderAt, size int64) (Footer, error) {
	if size < ExternalTOCFooterSize {
		return Footer{}, fmt.Errorf("%w: %d bytes is too small for a footer", ErrNotEStargz, size)
	}
	tail := make([]byte, min(size, FooterSize))
	if err := readFull(r, tail, size-int64(len(tail))); err != nil {
		return Footer{}, fmt.Errorf("read footer: %w", err)
	}
	return ParseFooter(tail)
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

// tocJSONFrom gunzips the TOC member and returns the stargz.index.json
// payload, at most maxTOC bytes of it, and its digest by alg.
//
// The payload is read straight into a string (strings.Builder), which the
// TOC decoder slices without copying; the digest is computed on the way.
func tocJSONFrom(ctx context.Context, region []byte, maxTOC int64, alg digest.Algorithm) (string, digest.Digest, error) {
	zr, err := gzip.NewReader(bytes.NewReader(region))
	if err != nil {
		return "", "", fmt.Errorf("%w: TOC member is not gzip: %v", ErrNotEStargz, err)
	}
	zr.Multistream(false)
	// The limit covers the JSON, its tar header and any PAX records; it
	// stops a gzip bomb whatever the headers claim.
	tr := tar.NewReader(io.LimitReader(ctxReader{ctx, zr}, maxTOC+1<<20))
	h, err := tr.Next()
	if err != nil {
		if ctx.Err() != nil {
			return "", "", ctx.Err()
		}
		return "", "", fmt.Errorf("%w: TOC member holds no tar entry: %v", ErrNotEStargz, err)
	}
	if h.Name != TOCTarName {
		return "", "", fmt.Errorf("%w: TOC member holds %q, want %q", ErrNotEStargz, h.Name, TOCTarName)
	}
	if h.Typeflag != tar.TypeReg { // tar.Reader reports TypeRegA as TypeReg
		return "", "", fmt.Errorf("%w: TOC member holds %s of tar type %q, not a regular file", ErrNotEStargz, TOCTarName, h.Typeflag)
	}
	if h.Size > maxTOC {
		return "", "", fmt.Errorf("%w: TOC JSON of %d bytes, limit %d", ErrTooLarge, h.Size, maxTOC)
	}
	// A size the compressed bytes cannot inflate to is a lie; refusing it
	// before allocating keeps allocation tied to the bytes really read.
	if h.Size/maxDeflateRatio > int64(len(region)) {
		return "", "", fmt.Errorf("%w: TOC JSON of %d bytes cannot come from %d compressed bytes", ErrNotEStargz, h.Size, len(region))
	}
	var sb strings.Builder
	sb.Grow(int(h.Size))
	hash := alg.Hash()
	if n, err := io.CopyN(io.MultiWriter(&sb, hash), tr, h.Size); err != nil {
		if ctx.Err() != nil {
			return "", "", ctx.Err()
		}
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return "", "", fmt.Errorf("%w: read TOC JSON (%d of %d bytes): %v", ErrNotEStargz, n, h.Size, err)
	}
	return sb.String(), digest.NewDigest(alg, hash), nil
}

// ctxReader is a reader that fails with its context's error once the
// context is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// verify reports whether b has digest d, without allocating for sha256.
func verify(b []byte, d digest.Digest) bool {
	if d.Algorithm() != digest.SHA256 {
		return d.Algorithm().Available() && d.Algorithm().FromBytes(b) == d
	}
	sum := sha256.Sum256(b)
	var hx [2 * sha256.Size]byte
	const hexDigits = "0123456789abcdef"
	for i, c := range sum {
		hx[2*i], hx[2*i+1] = hexDigits[c>>4], hexDigits[c&0xf]
	}
	return d.Encoded() == string(hx[:])
}
