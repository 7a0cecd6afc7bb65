// SPDX-License-Identifier: Apache-2.0

// Package cachedir is the store's on-disk cache: chunks, blobs,
// manifests and configs, filed under the digest of their bytes, and a
// few records the store files under names of its own.
//
// # Kinds of entries
//
// A Key says which entry and what its bytes must be. There are two
// kinds, in two directories, so that a name of one kind can never meet a
// name of the other:
//
//   - Content(dg): the bytes hash to dg (a chunk, the blob copy of a
//     layer's blob file, a manifest, a config). Keys are digests and
//     content never changes, so there is no invalidation: an entry is
//     either absent or right (groupcache's "keys are unversioned"), and
//     the same chunk in two layers or two images is stored once.
//   - Record(name, want): filed under a name the caller derives from what
//     the entry is about, with the digest its bytes must hash to, or none.
//     The store has two: a layer's TOC ranges (no want: the format reader
//     verifies them against the TOC digest on every parse) and a file's
//     whole content (want: the file digest of its TOC).
//
// A key may also say its entry's size (Sized). A reader then finds only
// an entry of that size, so that a source that disagrees with a digest
// about its size (a hostile TOC) gets a miss, never bytes of another
// length.
//
// # Layout
//
//	<root>/content/<algo>/<first two hex>/<hex>   content entries
//	<root>/records/<algo>/<first two hex>/<hex>   records
//	<root>/tmp/                                   entries being written
//
// Names are validated digests, so no key names a path outside its kind's
// directory. Open removes tmp/ and any file of the two trees that is not
// an entry, and rebuilds the accounting from what is there. An earlier
// version filed both kinds under blobs/: Open adopts that tree as
// content/ (one rename; its records become content that nobody asks
// for, and age out), or removes it when content/ is in use already.
//
// # Writing
//
// One Writer writes every entry: Writer(ctx, key), Write, then Commit or
// Abort; Put does the three for bytes in memory. Writes are atomic: the
// bytes go to a temporary file, and Commit checks them against the key
// (their digest, unless the key is an unchecked record; their size, if it
// says one), syncs and renames the file into place. A crash leaves at most
// temporary files. Two writers of one entry exclude each other (the
// second waits, honouring its context, and then finds the entry present:
// ErrExists, which Put ignores). A writer whose key says its size makes
// room for it when it is created.
//
// # Checking
//
// Nothing on disk is trusted across a restart. Every read (Get, ReadAll,
// ReadAt) checks the entry once per process, before its first byte leaves
// the cache: it hashes the file (a 256 KiB buffer; about 0.65 ms per MiB
// with SHA-NI) against the digest the key says, and its length against the
// entry's. An entry this process committed is known good; an entry in the
// memory LRU is too. Concurrent first readers wait for one hash. A
// mismatch or a read error removes the entry, is logged at Warn with the
// path and both digests, and is a miss for the reader (ErrNotFound,
// wrapping ErrCorrupt too): the store fetches the content again. An
// unchecked record is handed out as it is. A damage done to a file after
// its check in this process is not seen until the next start, except a
// change of length, which Get (the file FUSE passthrough hands the
// kernel) sees with an fstat; fs-verity would see it all, but is missing
// where it matters (see docs/design.md).
//
// # Memory
//
// A small LRU in memory, bounded in bytes, holds hot content entries
// (Remember, and what ReadAll reads): only content, whose bytes are what
// their digest says. Reads of part of an entry (ReadAt) are one pread on
// a file kept open in a small LRU of open files.
//
// # Eviction
//
// The cache holds at most Options.MaxSize bytes, both kinds counted
// together in one LRU. When a write would pass it, the least recently
// used entries of either kind are evicted, except pinned content entries
// (the store pins what a prefetch is filling). Demote sends a content
// entry to the cold end (the chunks of a file assembled whole).
//
// # Disk full
//
// A write that finds the disk full (ENOSPC or EDQUOT, on create, write,
// sync or rename) fails, and the cache yields: its limit drops to what it
// holds minus a margin (1/32 of MaxSize, 1 MiB to 256 MiB) and eviction
// runs. It is logged once at Warn; every minute the next write checks the
// free space and raises the limit again, and once it is back at MaxSize
// the condition has cleared (Info) and a new one is logged at Warn again
// (full.go). Readers lose nothing but the entry: the store keeps what it
// fetched in memory and can fetch it again.
//
// Lock order: Dir.mu, then memCache.mu or fdCache.mu (eviction drops
// entries from both). Dir.mu is never held while taking a key lock or
// doing disk I/O other than unlink and close.
package cachedir
