// SPDX-License-Identifier: Apache-2.0

// Package cachedir is the store's on-disk cache of verified content:
// chunks, tables of contents, manifests and configs, each filed under the
// digest of its bytes.
//
// Keys are digests and content never changes, so there is no invalidation:
// an entry is either absent or right (groupcache's "keys are unversioned").
// The same chunk in two layers or two images is stored once.
//
// A few entries are filed under a name rather than the digest of their
// bytes: the blob ranges of a layer's TOC (PutNamed, read back with
// ReadNamed; the reader verifies them) and whole files assembled from
// their chunks (NamedWriter, which checks the content against the file's
// own digest and size at Commit; GetNamed and ReadNamedAt are told that
// digest again).
//
// Writes are atomic: a Writer fills a temporary file, and Commit checks the
// size and digest, syncs, and renames it into place. A crash leaves at most
// temporary files, which Open removes. Two writers of one key exclude each
// other (the second waits, honouring its context, and then finds the entry
// present). A writer that knows its size makes room for it when created.
//
// Nothing on disk is trusted across a restart. Every read (Get, ReadAll,
// ReadAt, and the named GetNamed and ReadNamedAt) checks the entry once
// per process, before its first byte leaves the cache: it hashes the file
// (a 256 KiB buffer; about 0.65 ms per MiB with SHA-NI) against the digest
// the content must have. An entry this process committed is known good;
// an entry in the memory LRU is too (it holds only checked content under
// its own digest). Concurrent first readers wait for one hash. A mismatch
// or a read error removes the entry, is logged at Warn with the path and
// both digests, and is a miss for the reader (ErrNotFound, wrapping
// ErrCorrupt too): the store fetches the content again. A damage done to
// a file after its check in this process is not seen until the next
// start; fs-verity would see it, but is missing where it matters (see
// docs/design.md).
//
// The cache holds at most Options.MaxSize bytes. When a commit would pass
// it, the least recently used entries are evicted, except pinned ones (the
// store pins what a prefetch is filling). A small in-memory LRU, bounded in
// bytes, sits in front for hot chunks.
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
// Reads of part of an entry (Dir.ReadAt) are one pread on a file kept
// open in a small LRU of open files.
//
// Lock order: Dir.mu, then memCache.mu or fdCache.mu (eviction drops
// entries from both). Dir.mu is never held while taking a key lock or
// doing disk I/O other than unlink and close.
package cachedir
