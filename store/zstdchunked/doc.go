// SPDX-License-Identifier: Apache-2.0

// Package zstdchunked reads and writes zstd:chunked layers, the format
// containers/storage (Podman) writes for `--compression-format
// zstd:chunked`: zstd tar blobs whose files can be fetched and verified
// one by one, without downloading the whole layer.
//
// # The format in one page
//
// A zstd:chunked blob is a valid zstd stream of a tar archive, cut into
// many zstd frames. Each non-empty regular file's payload starts a new
// frame, and a rolling checksum splits large payloads into several
// frames (chunks); runs of zeros become chunks of type "zeros". Tar
// headers go into whatever frame is open. After the tar come three zstd
// skippable frames (magic 50 2a 4d 18, then a little-endian uint32
// length), invisible to a plain zstd decoder and so to the DiffID:
//
//	[frame: tar hdr][frame: file A][frame: hdr][frame: chunk 1 of B][frame: chunk 2 of B] ...
//	[skippable: zstd(TOC JSON)][skippable: zstd(tar-split JSON)][skippable: 64-byte footer]
//
// The footer holds seven little-endian uint64s (TOC offset, compressed
// and uncompressed TOC length, manifest type 1, then the same three for
// the tar-split) and the magic "GNUlInUx". Offsets point at the zstd frame
// inside a skippable frame, past its 8-byte header. The layer descriptor
// repeats the TOC position in the annotation
// io.github.containers.zstd-chunked.manifest-position
// ("offset:compressedLen:uncompressedLen:1"); containers/storage reads only
// the annotation, and so does Open when it is there. The footer is the
// fallback.
//
// The TOC is {"version":1,"entries":[...],"tarSplitDigest":...}. Entries
// follow the tar ("dir", "reg", "symlink", "hardlink", "char", "block",
// "fifo"); a "reg" entry gives the blob range of its frames ("offset",
// "endOffset") and the sha256 of its whole content ("digest"). A file cut
// into several chunks also carries chunk fields ("chunkOffset",
// "chunkSize", "chunkDigest", "chunkType") on its reg entry, followed by
// one "chunk" entry per further chunk. Chunk i spans the blob from its
// offset to the next chunk's offset; the last ends at the file's
// endOffset.
//
// # Trust
//
// Nothing in the blob is trusted. The layer descriptor, pinned by the
// manifest digest, names the TOC by the sha256 of its *compressed* bytes
// (io.github.containers.zstd-chunked.manifest-checksum, the "TOC digest"
// of Podman 5's additional layer store lookups). Open refuses a TOC whose
// bytes do not hash to it. DecodeChunk refuses a chunk whose bytes do not
// hash to its chunkDigest; a file stored as one chunk is checked against
// its whole-file digest. Chunks of type "zeros" are trusted through the
// TOC and served without fetching. A non-empty file with no digest to
// check makes the whole layer refused: serving unverified bytes is worse
// than pulling the layer normally.
//
// Every size and offset in the annotations, footer and TOC is checked
// before it is used: the TOC must lie inside the blob and inflate to at
// most OpenOptions.MaxTOCSize, chunks must lie before the TOC and within
// the caps of package index (index.MaxChunkSize, index.MaxCompressedChunk,
// ...), each chunk's end offset (the next chunk's offset, or the file's
// endOffset) included, and names must not escape the
// layer root. zstd frames are decoded with a shared decoder whose output
// is capped at the size the caller expects, so a decompression bomb costs
// no more memory than an honest chunk.
//
// # Using it
//
// Open parses a blob through an io.ReaderAt (one read for the TOC, one
// more for the footer when the annotations are missing) into a Blob whose
// Index is the format-neutral tree of package index, exactly as package
// estargz does. To read a file, find the chunk holding an offset with
// index.Entry.ChunkAt; a Zero chunk needs no blob bytes, any other needs
// blob bytes [CompressedOffset, CompressedEnd) passed to DecodeChunk.
//
// Build writes a zstd:chunked blob from a tar with containers/storage's
// own compressor, so the output is what `podman push --compression-format
// zstd:chunked` produces, annotations included.
package zstdchunked
