// SPDX-License-Identifier: Apache-2.0

package zstdchunked

import "errors"

// Error classes. Every error Open, ParseFooter, ParsePosition and
// DecodeChunk return wraps at most one of these, or index.ErrInvalid for a
// table of contents that is well formed zstd and JSON but describes an
// impossible or hostile tree. Inspect them with errors.Is.
var (
	// ErrNotZstdChunked means neither the annotations nor the footer
	// locate a zstd:chunked TOC, or what they point at is not one. Such a
	// layer may still be a valid zstd layer; it just cannot be served
	// lazily.
	ErrNotZstdChunked = errors.New("not a zstd:chunked blob")

	// ErrVerify means content does not match the digest that vouches for
	// it: the compressed TOC against OpenOptions.TOCDigest, or a chunk
	// against its chunkDigest (or its file's digest). A chunk that does not
	// decompress fails verification too.
	ErrVerify = errors.New("digest mismatch")

	// ErrTooLarge means the TOC (compressed or decompressed) is larger
	// than OpenOptions.MaxTOCSize allows, or the tar-split larger than
	// OpenOptions.MaxTarSplitSize. A chunk over the caps of package index
	// is index.ErrInvalid.
	ErrTooLarge = errors.New("too large")
)
