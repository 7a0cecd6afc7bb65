// SPDX-License-Identifier: Apache-2.0

package index

import (
	"fmt"
	"math"
)

// Hard caps on what a table of contents may describe. They hold for every
// Index, whatever Limits a format reader passes: a TOC that exceeds one is
// refused with ErrInvalid, and the store then leaves the layer to
// containers/storage, which pulls it normally. The rest of the store
// relies on them to bound its buffers (see the package documentation for
// the invariant). Each is far above what real writers produce, so that
// only hostile or freak layers lose lazy pulling.
const (
	// MaxChunkSize bounds a chunk's uncompressed size, the buffer one
	// decode fills. eStargz writers cut files into 4 MiB chunks;
	// zstd:chunked cuts where a rolling checksum says (64 KiB on average),
	// and only long runs of repeated data make chunks of a few MiB (the
	// largest in 5 GB of /usr: 4.3 MiB).
	MaxChunkSize = 64 << 20

	// MaxCompressedChunk bounds a chunk's compressed range, CompressedEnd
	// - CompressedOffset: the blob bytes one chunk needs fetched. Deflate
	// and zstd grow incompressible data by under 0.1 %, and an eStargz
	// member also carries the tar headers of the entries after its file
	// (directories, links, empty files): the slack of MaxChunkSize/4 is
	// half a million of them.
	MaxCompressedChunk = MaxChunkSize + MaxChunkSize/4

	// MaxInnerOffset bounds the decompressed bytes skipped before a chunk
	// packed into a shared eStargz member (InnerOffset). Writers pack
	// files until a member holds MinChunkSize, a few KiB.
	MaxInnerOffset = MaxChunkSize

	// MaxEntries bounds the entries of an Index, hard links and implicit
	// directories included. Entry IDs are uint32 and the FUSE tree puts
	// them in the low half of inode numbers. The largest real layers
	// have a few hundred thousand.
	MaxEntries = 1 << 22

	// MaxNameLen bounds an entry or hard link name, and MaxLinkNameLen a
	// symlink or hard link target, in bytes: PATH_MAX. Nothing longer can
	// be created or resolved through path system calls.
	MaxNameLen     = 4096
	MaxLinkNameLen = 4096

	// MaxXattrNameLen, MaxXattrValueLen and MaxXattrListLen are the
	// kernel's XATTR_NAME_MAX, XATTR_SIZE_MAX and XATTR_LIST_MAX: the
	// longest name, the largest value and the longest list of names
	// (each with its NUL) an entry may carry, which also bounds the count.
	MaxXattrNameLen  = 255
	MaxXattrValueLen = 64 << 10
	MaxXattrListLen  = 64 << 10

	// MaxID is the largest uid or gid: 2^32-1 is (uid_t)-1, which chown
	// reads as "no change", and larger ones do not fit a uid_t (a mount
	// would show them as 0).
	MaxID = math.MaxUint32 - 1
)

// checkChunkCaps checks a chunk's sizes against the hard caps and lim.
func checkChunkCaps(lim Limits, c Chunk) error {
	if c.Size <= 0 || c.Size > MaxChunkSize {
		return fmt.Errorf("chunk at %d has size %d, limit %d", c.Offset, c.Size, MaxChunkSize)
	}
	if c.Zero {
		return nil
	}
	span := c.CompressedEnd - c.CompressedOffset
	switch {
	case c.CompressedOffset < 0 || c.CompressedEnd <= c.CompressedOffset:
		return fmt.Errorf("chunk at %d has compressed range [%d, %d)", c.Offset, c.CompressedOffset, c.CompressedEnd)
	case span > MaxCompressedChunk:
		return fmt.Errorf("chunk at %d has a compressed range of %d bytes, limit %d", c.Offset, span, MaxCompressedChunk)
	case lim.BlobEnd > 0 && c.CompressedEnd > lim.BlobEnd:
		return fmt.Errorf("chunk at %d ends at blob offset %d, past %d", c.Offset, c.CompressedEnd, lim.BlobEnd)
	case c.InnerOffset < 0 || c.InnerOffset > MaxInnerOffset:
		return fmt.Errorf("chunk at %d has inner offset %d, limit %d", c.Offset, c.InnerOffset, MaxInnerOffset)
	case lim.MaxInflateRatio > 0 && (c.InnerOffset+c.Size-1)/span+1 > lim.MaxInflateRatio:
		// ceil((InnerOffset+Size)/span) > ratio, without overflow.
		return fmt.Errorf("chunk at %d: %d+%d bytes cannot come from %d compressed bytes", c.Offset, c.InnerOffset, c.Size, span)
	}
	return nil
}

// CheckNames refuses a name longer than MaxNameLen or a link target
// longer than MaxLinkNameLen, with an error wrapping ErrInvalid that does
// not quote them. The Builder checks every name it gets; format readers
// call it first, so that no error of theirs quotes a huge name.
func CheckNames(name, target string) error {
	switch {
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: name of %d bytes, limit %d", ErrInvalid, len(name), MaxNameLen)
	case len(target) > MaxLinkNameLen:
		return fmt.Errorf("%w: link target of %d bytes, limit %d", ErrInvalid, len(target), MaxLinkNameLen)
	}
	return nil
}

// checkEntryCaps checks an entry's owner and xattrs against the hard caps.
func checkEntryCaps(e *Entry) error {
	switch {
	case e.UID < 0 || e.UID > MaxID || e.GID < 0 || e.GID > MaxID:
		return fmt.Errorf("owner %d:%d outside [0, %d]", e.UID, e.GID, MaxID)
	}
	return checkXattrs(e.Xattrs)
}

func checkXattrs(x map[string][]byte) error {
	list := 0
	for k, v := range x {
		switch {
		case k == "" || len(k) > MaxXattrNameLen:
			return fmt.Errorf("xattr name of %d bytes, limit %d", len(k), MaxXattrNameLen)
		case len(v) > MaxXattrValueLen:
			return fmt.Errorf("xattr %q of %d bytes, limit %d", k, len(v), MaxXattrValueLen)
		}
		if list += len(k) + 1; list > MaxXattrListLen {
			return fmt.Errorf("xattr names of more than %d bytes", MaxXattrListLen)
		}
	}
	return nil
}
