// SPDX-License-Identifier: Apache-2.0

// Package store is the domain core of stargz-store: it turns an image
// reference and a digest into a lazily readable, verified layer. It knows
// nothing of FUSE; package layerfs translates kernel requests into calls
// here.
//
// # Lifecycle
//
// The first lookup of <ref>/<digest> resolves the reference (manifest,
// index → host platform, config) once for all its layers, matches the
// digest against the layers' blob digests (Podman ≤ 5.0, "Gen A") and
// their TOC digests (Podman ≥ 5.1, "Gen B"), reads the layer's footer and
// TOC with range requests and verifies the TOC against the manifest's
// annotation. From then on file reads fetch single chunks, verify each
// against its digest and keep it while the layer is in use.
//
// Storage tells the store which layers it uses: creating <layer>/use takes
// a reference, removing the layer directory releases one. The counts are
// keyed by the directory name storage used (a blob digest or a TOC digest),
// because storage releases by the same path. A layer nobody uses is freed.
//
// # Trust
//
// The manifest is trusted: it is addressed by the reference the runtime
// asked for. Everything else is checked against it: the TOC against the
// TOC digest annotation, every chunk against its digest in the TOC. A layer
// whose TOC carries no chunk digests is refused (ErrNotLazy), and storage
// then pulls it normally. The cache on disk is not trusted across a
// restart: every entry is checked again against the digest its content
// must have at its first read in the process, and a damaged one is a miss
// (fetched again). The layer's blob file is served from a full download of
// the blob checked against the blob digest (blob.go): a range of a blob
// cannot be checked alone.
//
// # Whole files
//
// With a cache, a regular file of more than one chunk and at least 1 MiB
// gets a second form once all its chunks are cached: one cache entry
// holding its whole content, assembled in the background (one file at a
// time per Manager) and verified against the file's digest in the TOC
// (a file whose TOC gives none gets no such entry).
// Layer.CachedFile returns it, so that FUSE passthrough can give the
// kernel one backing file; reads through Layer.ReadAt fall back to it
// when chunks were evicted. See wholefile.go.
//
// # Read path
//
// A read of a file, Layer.ReadAt, goes down these files in this order:
//
//  1. layer.go: ReadAt bounds the read's wait (LayerOptions.ReadTimeout,
//     from its first chunk not in memory or the cache)
//     and walks the file's chunks; readChunk serves each: a run of zeros
//     from nothing, else
//  2. chunks.go: readCached, the bytes wanted straight from the cache;
//     else
//  3. wholefile.go: readWhole, from the file's whole-file entry; else
//  4. fetch.go: chunk. It looks the chunk up (chunks.go: in memory or in
//     the cache) and claims it (claims.go). A chunk that another fetch
//     has claimed is waited for, then looked up again: this is the one
//     place where a read is de-duplicated. planRead adds to the claim
//     what the request brings along, the chunks no other fetch has: the
//     rest of the chunk's gzip member and the read-ahead (readahead.go),
//     the small files of its directory (speculate.go). fetchDetached then
//     runs the fetch on a goroutine of the layer, on the layer's context:
//     this is the one place a fetch is detached from its reader, who
//     waits with its own context for its chunk alone.
//  5. fetch.go: fetchRefs cuts the fetch into pieces of one request each
//     (fetchmem.go), each with its own claim (claims.go: split);
//     fetchPiece takes the piece's memory from the fetch budget
//     (fetchmem.go) and reads its ranges through the layer's BlobReader
//     (readSpans; registry.go adapts store/remote's Blob, the one part
//     that speaks HTTP). The prefetch, the guesses and the
//     background fetch claim their chunks the same way, leaving out the
//     claimed ones, and enter here.
//  6. decode.go: each chunk whose bytes are in is decoded and verified
//     while the rest arrives, and kept; the reader gets its chunk at
//     once, before the read-ahead behind it.
//  7. fetch.go: settle decodes what was left, keeps it and looks for ELF
//     heads among the chunks (speculate.go: guesses start there); the
//     piece's claim ends and whoever waited looks again.
//  8. chunks.go: keep holds the chunks in memory at once, so that every
//     later look finds them, and leaves their cache write to a goroutine
//     (the background fetch writes its own before its claim ends); a
//     file whose last chunk this was is queued for whole-file assembly
//     (wholefile.go).
//
// Who runs what: every goroutine below is the layer's (Layer.spawn),
// runs on its context and is waited for by Close.
//
//   - the reader: no fetch. It claims, starts the fetch and waits.
//   - a fetch goroutine per read's fetch (fetchDetached) and per guess
//     (speculate); a fetch decodes on goroutines of its own (at most
//     GOMAXPROCS at work), which it waits for.
//   - the layer's fetching goroutine: the prefetch, then the background
//     fetch, one request after the other (prefetch.go).
//   - a cache-write goroutine per batch of chunks a read's fetch, the
//     prefetch or a guess keeps; it holds the batch's fetch memory until
//     the chunks are written.
//   - at most one assembly goroutine (wholefile.go), and at most one
//     download of the blob for the blob file (blob.go).
//
// Locks: a Layer's state is cut by concern, each part a small struct
// with its own mutex in its own file (claims.go, readahead.go,
// speculate.go, wholefile.go, prefetch.go, chunks.go, blob.go), and
// Layer.mu guards only whether Close began. Only two holds nest: the
// whole-file and blob-download mutexes around Layer.mu (spawn), and the
// prefetch's around the cache's (Pin). No lock is held across network or
// disk I/O. The order is spelled out at the top of layer.go.
//
// # Memory
//
// What the daemon holds in memory is bounded whatever an image or a
// registry says:
//
//   - fetches: at most Options.MaxFetchMemory (256 MiB) of compressed
//     buffers and decoded chunks not yet in the cache, for all layers
//     together; the prefetch, speculative and background fetches use at
//     most half of it and wait behind file reads. Fetches are cut into
//     pieces of at most 16 MiB compressed, one request each. A chunk
//     decodes to at most 64 MiB from at most 80 MiB, or store/index
//     refuses its TOC and the layer is not lazy; only a budget set below
//     224 MiB lets one piece of such a chunk go past it, alone. See
//     fetchmem.go.
//   - hot chunks: the cache's memory LRU (cachedir.Options.MemorySize,
//     64 MiB).
//   - indexes: the open layers' indexes, at most Options.MaxIndexMemory
//     (512 MiB) as estimated within 15 % (indexmem.go), and for each
//     layer being opened its TOC while it is parsed (a bounded multiple
//     of MaxTOCSize, 64 MiB; storage opens a few layers at once).
//   - blob tails fetched ahead: at most 32 MiB per image being resolved
//     (tails.go).
//   - FUSE (package layerfs): a reply buffer of at most 1 MiB per request
//     in flight.
//
// With the defaults that is 256 + 64 + 512 MiB, plus the opens and FUSE
// requests in flight. Prefetches pin at most half of the cache on disk,
// whatever their landmarks say (prefetch.go). Without a cache (tools,
// tests) a layer keeps the chunks it verified in memory while it is open.
//
// # The registry
//
// The store speaks HTTP only through package store/remote, its registry
// client: remote.Blob reads ranges of a layer blob (several in one
// multi-range request when the registry allows), remote.Repository GETs
// manifests, configs and TOC blobs, both through one endpoint loop
// (mirrors first, retries within ReadTimeout, a progress bound per
// attempt, a short probe while a host is known to be down) and one table
// from HTTP status to error. The store decides the rest (registry.go):
// which host's request limit and outage memo a blob shares (one
// remote.Host per registry host and Manager), the priority of a fetch
// (a file read is remote.Read, the prefetch and speculative fetches
// remote.Prefetch, the background fetch remote.Background), and the
// store's class of remote's errors (remote.ErrNotFound and
// remote.ErrVerify of what resolving reads become ErrNotFound and
// ErrVerify). Layers read blobs through the small interfaces BlobReader
// and rangeReader, so tests give them blobs in memory.
//
// # Contexts
//
// Fetches that several readers may wait for run on a context owned by the
// layer (fetchDetached; the Manager's resolves and opens through
// internal/flight on its own), not by the caller that started them; Close
// cancels them. A layer's context, and the Manager's for the blob tails it
// fetches ahead while resolving, are the only contexts kept in a struct.
package store
