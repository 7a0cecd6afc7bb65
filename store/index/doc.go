// SPDX-License-Identifier: Apache-2.0

// Package index is the format-neutral table of contents of one layer.
//
// A lazily served layer is a compressed tar blob plus a table of contents
// (TOC) that lists every tar entry and, for every regular file, the chunks
// its content is split into. The eStargz and zstd:chunked readers parse
// their own TOC formats and feed a [Builder]; everything above them (the
// store, the FUSE tree) sees only an [Index] and never cares which format a
// layer is.
//
// Both formats spell their TOC entries alike (zstd:chunked's TOC extends
// eStargz's): a format reader decodes each into a TOCEntry and hands it to
// Builder.AddTOC, the one validation of an entry's metadata (type, mode,
// device numbers, modtime, size, file digest; names, owners and xattrs as
// Add checks them), with the one difference between the formats an
// explicit parameter (Limits.IgnoreOtherSizes). Hard links and chunk
// entries are the formats' own (AddHardlink, AddChunk, CheckChunkName),
// and xattr values are base64 in both (DecodeXattr).
//
// What the builder guarantees about a built Index, so that no caller has to
// check again:
//
//   - names are clean, relative, slash-separated paths ("" is the root) and
//     never escape the root;
//   - every parent directory exists (implicit ones get mode 0755, 0:0);
//   - hard links are resolved: a link name maps to its target's *Entry,
//     which counts all its names in NumLink;
//   - every regular file's chunks cover [0, Size) in order without gaps or
//     overlap, and each non-zero chunk has a digest;
//   - the hard caps of caps.go hold, whatever the TOC says.
//
// The invariant the rest of the store relies on: every chunk c of an
// Index satisfies
//
//	0 < c.Size <= MaxChunkSize
//
// and, unless c.Zero,
//
//	0 <= c.CompressedOffset < c.CompressedEnd <= Limits.BlobEnd (<= the blob size)
//	c.CompressedEnd - c.CompressedOffset <= MaxCompressedChunk
//	0 <= c.InnerOffset <= MaxInnerOffset
//
// so a reader may size a chunk's buffers from these fields once it bounds
// how many chunks it holds at a time. Names are at most MaxNameLen bytes,
// symlink targets MaxLinkNameLen, owners at most MaxID, xattrs within the
// kernel's limits, and an Index has at most MaxEntries entries.
//
// Building is linear in the entries and hard links (plus sorting each
// directory) and honours a context, so that a hostile TOC costs no more
// than its size.
//
// An Index is immutable once built and safe for concurrent use.
package index
