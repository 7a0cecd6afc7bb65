// SPDX-License-Identifier: Apache-2.0

// Package estargz reads eStargz layers: gzip tar blobs whose files can be
// fetched and verified one by one, without downloading the whole layer.
//
// # The format in one page
//
// An eStargz blob is a valid gzip stream of a tar archive, cut into many
// gzip members. Each non-empty regular file's payload starts a new member
// (large files start one per chunk), so any payload can be gunzipped on
// its own from a known blob offset. After the last file comes a member
// holding a tar with one file, stargz.index.json: the table of contents
// (TOC). The blob ends with a 51-byte footer, an empty gzip member whose
// header extra field reads "SG", 22, "%016xSTARGZ": the TOC member's
// offset in hex.
//
//	[member: tar hdr + file A][member: chunk 1 of B][member: chunk 2 of B] ...
//	[member: tar hdr "stargz.index.json" + TOC JSON + tar end][footer, 51 B]
//
// The TOC lists every tar entry in order ("dir", "reg", "symlink",
// "hardlink", "char", "block", "fifo") with its metadata; a regular file
// that was split gets "chunk" entries right after it. Each reg and chunk
// entry gives the blob offset of its gzip member ("offset"), where in the
// decompressed member it starts ("innerOffset", non-zero when small files
// are packed into one member), its place in the file ("chunkOffset",
// "chunkSize") and the sha256 of its uncompressed bytes ("chunkDigest").
//
// Older blobs end in the 47-byte legacy stargz footer (no "SG" header in
// the extra field). Blobs whose TOC lives in a separate image end in a
// 46-byte footer reading "STARGZEXTERNALTOC"; this package recognizes and
// refuses them (ErrExternalTOC).
//
// # Trust
//
// Nothing in the blob is trusted. The layer descriptor, pinned by the
// manifest digest, names the TOC digest; Open refuses a TOC whose JSON
// does not hash to it, and DecodeChunk refuses a chunk whose bytes do not
// hash to its chunkDigest. A layer with any non-empty chunk lacking a
// chunkDigest is refused: serving unverified bytes is worse than pulling
// the layer normally. The whole-blob digest and the DiffID are not checked
// while serving lazily.
//
// Every size and offset in the footer and TOC is checked before it is
// used: the TOC member must lie inside the blob and inflate to at most
// OpenOptions.MaxTOCSize, chunks must lie before the TOC and within the
// hard caps of package index (index.MaxChunkSize, index.MaxCompressedChunk,
// ...), and names must not escape the layer root. Memory stays
// proportional to the TOC size, and the parse stops when Open's context is
// done. A .prefetch.landmark outside the data region is ignored
// (Blob.BadLandmark): the layer is served without prefetch.
//
// # Using it
//
// Open parses a blob through an io.ReaderAt (two reads: the footer, then
// the TOC) into a Blob whose Index is the format-neutral tree of package
// index. To read a file, find the chunk holding an offset with
// index.Entry.ChunkAt, fetch blob bytes [CompressedOffset, CompressedEnd)
// and pass them to DecodeChunk. Chunks are identified by (entry, chunk
// offset), never by compressed offset, because packed chunks share one.
//
// Landmarks: a root file .prefetch.landmark marks the end of the files
// worth prefetching (Blob.PrefetchEnd); .no.prefetch.landmark asks for no
// prefetch (Blob.NoPrefetch). Both, and whiteouts, stay in the index as
// ordinary files; the file system decides whether to show them.
package estargz
