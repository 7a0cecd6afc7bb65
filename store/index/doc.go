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
// What the builder guarantees about a built Index, so that no caller has to
// check again:
//
//   - names are clean, relative, slash-separated paths ("" is the root) and
//     never escape the root;
//   - every parent directory exists (implicit ones get mode 0755, 0:0);
//   - hard links are resolved: a link name maps to its target's *Entry,
//     which counts all its names in NumLink;
//   - every regular file's chunks cover [0, Size) in order without gaps or
//     overlap, each chunk has a non-empty compressed range and a digest
//     (unless it is a run of zeros that needs no fetch), and no range lies
//     past the limit the format reader gave.
//
// An Index is immutable once built and safe for concurrent use.
package index
