// SPDX-License-Identifier: Apache-2.0

package estargz

import "errors"

// Error classes. Every error Open, ParseFooter and DecodeChunk return wraps
// at most one of these, or index.ErrInvalid for a table of contents that is
// well formed gzip and tar but describes an impossible or hostile tree.
// Inspect them with errors.Is.
var (
	// ErrNotEStargz means the blob has no eStargz (or legacy stargz)
	// footer, or the footer points at something that is not a TOC. Such a
	// layer is still a valid gzip layer; it just cannot be served lazily.
	ErrNotEStargz = errors.New("not an eStargz blob")

	// ErrExternalTOC means the blob ends in the footer of an eStargz layer
	// whose TOC lives in a separate image. This package does not fetch
	// external TOCs.
	ErrExternalTOC = errors.New("eStargz blob with an external TOC")

	// ErrVerify means content does not match the digest that vouches for
	// it: the TOC JSON against OpenOptions.TOCDigest, or a chunk against
	// its chunkDigest.
	ErrVerify = errors.New("digest mismatch")

	// ErrTooLarge means the TOC (compressed or decompressed) is larger
	// than OpenOptions.MaxTOCSize allows.
	ErrTooLarge = errors.New("TOC too large")
)
