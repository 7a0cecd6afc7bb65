// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/cachedir"
	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/store/index"
)

// Lock order. A Layer's state is cut by concern, each part a small struct
// with its own mutex in its own file; Layer.mu guards only whether Close
// began. Outermost first:
//
//	wholeFiles.mu (wholefile.go), blobFile.mu (blob.go)
//	    -> Layer.mu (spawn: starting the assembler, or the download)
//	prefetchState.mu (prefetch.go)
//	    -> cachedir's locks (pin: Pin takes only the cache's mutex)
//	fetchBook.mu (claims.go), readAhead.mu (readahead.go),
//	speculation.mu (speculate.go), heldChunks.mu (chunks.go), Layer.mu
//	    -> nothing: no other lock is taken while one of these is held.
//
// No other two of a layer's locks are ever held together, the cache is
// called with none held (but for Pin above), and none is held across
// network or disk I/O.

// BlobReader reads ranges of a layer's compressed blob, usually with HTTP
// range requests. Implementations must be safe for concurrent use.
type BlobReader interface {
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
}

// LayerDesc describes a layer as the image manifest and config do.
type LayerDesc struct {
	Ref       refspec.Reference
	Digest    digest.Digest // blob digest: the Gen A directory name
	Size      int64
	MediaType string
	TOCDigest digest.Digest // the Gen B directory name
	DiffID    digest.Digest // from the image config
	// UncompressedSize is the io.containers.estargz.uncompressed-size
	// annotation, or -1 when unknown.
	UncompressedSize int64
	// Format is the layer's format; empty means eStargz.
	Format Format
	// Annotations are the manifest's annotations of the layer (the
	// zstd:chunked reader finds its TOC through them).
	Annotations map[string]string
}

// LayerOptions tunes OpenLayer. The zero value is usable.
type LayerOptions struct {
	// MaxTOCSize bounds the decompressed TOC; 0 means the format's default.
	MaxTOCSize int64
	// Logger receives debug lines; nil discards.
	Logger *slog.Logger
	// Cache, if not nil, keeps verified chunks (by chunk digest) and the
	// blob ranges the TOC was read from, so that the layer opens and reads
	// again without the registry. nil keeps chunks in memory while the
	// layer is open.
	Cache *cachedir.Dir
	// ReadAhead is how many more compressed bytes of a file to fetch with
	// a chunk being read; 0 means none.
	ReadAhead int64
	// Speculate turns on fetching the libraries an ELF file will load
	// once its head has been read (see speculate.go).
	Speculate bool
	// tail, if not nil, is the blob's tail window fetched ahead (see
	// tails.go); the open reads it from the blob when it failed.
	tail *tailFetch
	// ExternalTOC fetches the TOC blob of a layer whose footer says its TOC
	// lives elsewhere (an external-TOC eStargz blob); nil makes such layers
	// not lazy.
	ExternalTOC func(desc LayerDesc) ([]byte, error)
	// ReadTimeout bounds how long ReadAt waits for the chunks it fetches
	// (or joins) in all; then it returns an error wrapping
	// context.DeadlineExceeded. 0 means no bound of the layer's own (the
	// Manager passes Options.ReadTimeout). ReadBlobAt waits for a whole
	// download instead, bounded by its progress (blob.go).
	ReadTimeout time.Duration
	// NoWholeFiles turns off whole-file cache entries: a regular file of
	// more than one chunk (and at least 1 MiB) is otherwise assembled into
	// one cache entry once all its chunks are cached, so that CachedFile
	// can return it. Without a Cache there are none.
	NoWholeFiles bool

	// assembly bounds whole-file assemblies across the layers sharing it
	// (a Manager's); nil gives the layer its own bound.
	assembly chan struct{}
	// mem is the fetch memory budget the layer shares (a Manager's); nil
	// gives the layer its own of defaultFetchMemory (fetchmem.go).
	mem *fetchBudget
	// pins bounds the cache bytes prefetches pin, across the layers
	// sharing it (a Manager's); nil gives the layer its own bound, half
	// of the cache (prefetch.go).
	pins *pinBudget
	// onClose, if not nil, is called once when the layer is closed.
	onClose func()
}

// chunkKey names a chunk by file and offset in the file, never by
// compressed offset: small-file packing puts several chunks in one member.
type chunkKey struct {
	entry uint32
	off   int64
}

// Layer is one lazily readable, verified layer. Every byte it returns from
// the layer's files has been checked against its chunk digest. A Layer is
// safe for concurrent use; Close stops its fetches, its prefetch and its
// background fetch, and waits for them.
//
// Besides fetches, a layer with a cache runs at most one goroutine that
// assembles whole-file entries (wholefile.go). Its state is cut by
// concern (see the lock order above); Layer itself holds what every read
// needs.
type Layer struct {
	id        uint32
	desc      LayerDesc
	blob      BlobReader
	fmt       *opened
	members   map[int64][]chunkRef // gzip members holding more than one chunk
	indexSize int64                // the heap the index keeps, estimated (indexmem.go)
	log       *slog.Logger
	cache     *cachedir.Dir
	held      heldChunks    // verified chunks in memory (chunks.go)
	readLimit time.Duration // LayerOptions.ReadTimeout
	mem       *fetchBudget  // memory fetches may hold (fetchmem.go)
	onClose   func()        // LayerOptions.onClose

	fetches  fetchBook     // claims, and the reads fetching (claims.go)
	ahead    readAhead     // sequential read-ahead (readahead.go)
	spec     speculation   // guesses (speculate.go)
	whole    wholeFiles    // whole-file assembly (wholefile.go)
	pre      prefetchState // the layer's own fetching, and its pins (prefetch.go)
	blobFile blobFile      // the download behind the blob file (blob.go)

	// ctx is the layer's lifetime, cancelled by Close: the fetches of
	// reads, the prefetch, background and speculative fetches and cache
	// writes run on it (the documented exception to "no ctx in a
	// struct").
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // goroutines the layer started (spawn)
	closed sync.Once

	// mu guards the fields below.
	mu       sync.Mutex
	stopping bool // Close began: start no goroutine
}

// chunkRef is one chunk of one file.
type chunkRef struct {
	e *index.Entry
	i int // index in e.Chunks
}

func (r chunkRef) chunk() index.Chunk { return r.e.Chunks[r.i] }
func (r chunkRef) key() chunkKey      { return chunkKey{r.e.ID, r.e.Chunks[r.i].Offset} }

var lastLayerID atomic.Uint32

// OpenLayer reads the table of contents of blob in desc.Format, verifies
// it against desc.TOCDigest and returns the layer. A blob that is not in
// that format, or whose TOC is refused, gives an error wrapping ErrNotLazy.
func OpenLayer(ctx context.Context, blob BlobReader, desc LayerDesc, opts LayerOptions) (*Layer, error) {
	if desc.TOCDigest == "" {
		return nil, fmt.Errorf("open layer %s: no TOC digest annotation: %w", desc.Digest, ErrNotLazy)
	}
	if desc.Format == "" {
		desc.Format = FormatEStargz
	}
	open, ok := openers[desc.Format]
	if !ok {
		return nil, fmt.Errorf("open layer %s: format %q: %w", desc.Digest, desc.Format, ErrNotLazy)
	}
	f, writeTOC, err := openCached(ctx, open, blob, desc, opts)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("open layer %s: %w", desc.Digest, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if opts.assembly == nil {
		opts.assembly = make(chan struct{}, maxAssemblies)
	}
	if opts.mem == nil {
		opts.mem = newFetchBudget(defaultFetchMemory)
	}
	if opts.pins == nil {
		opts.pins = newPinBudget(opts.Cache)
	}
	l := &Layer{
		id:        lastLayerID.Add(1),
		desc:      desc,
		blob:      blob,
		fmt:       f,
		members:   sharedMembers(f.index),
		indexSize: indexBytes(f.index),
		log:       log,
		cache:     opts.Cache,
		held:      heldChunks{m: map[chunkKey][]byte{}},
		readLimit: opts.ReadTimeout,
		mem:       opts.mem,
		onClose:   opts.onClose,
		fetches:   fetchBook{claimed: map[chunkKey]chan struct{}{}},
		ahead:     readAhead{budget: opts.ReadAhead, seq: map[uint32]seqState{}},
		spec:      speculation{on: opts.Speculate, looked: map[uint32]bool{}},
		whole:     wholeFiles{off: opts.NoWholeFiles, slots: opts.assembly, state: map[uint32]wholeState{}},
		pre:       prefetchState{prefetched: make(chan struct{}), fetched: make(chan struct{}), limit: opts.pins},
		ctx:       lctx,
		cancel:    cancel,
	}
	l.spec.left.Store(speculateBudget)
	if writeTOC != nil {
		// Not cancelled by Close, which waits for it: a few hundred
		// KiB to the local disk, and the next open needs it.
		l.spawn(func() { writeTOC(context.WithoutCancel(l.ctx)) })
	}
	return l, nil
}

// sharedMembers maps the compressed offset of each gzip member that holds
// more than one chunk (small-file packing) to those chunks, so that they
// are fetched and decoded together.
func sharedMembers(ix *index.Index) map[int64][]chunkRef {
	count := map[int64]int{}
	for _, e := range ix.Entries() {
		for _, c := range e.Chunks {
			if !c.Zero {
				count[c.CompressedOffset]++
			}
		}
	}
	out := map[int64][]chunkRef{}
	for _, e := range ix.Entries() {
		for i, c := range e.Chunks {
			if !c.Zero && count[c.CompressedOffset] > 1 {
				out[c.CompressedOffset] = append(out[c.CompressedOffset], chunkRef{e, i})
			}
		}
	}
	return out
}

// Index returns the layer's table of contents.
func (l *Layer) Index() *index.Index { return l.fmt.index }

// Desc returns the descriptor the layer was opened with.
func (l *Layer) Desc() LayerDesc { return l.desc }

// ID returns a number unique among the layers of this process, never 0.
func (l *Layer) ID() uint32 { return l.id }

// PrefetchEnd returns the end of the blob region the image author marked
// for prefetch, or 0. It is never past the end of the blob.
func (l *Layer) PrefetchEnd() int64 { return min(l.fmt.prefetchEnd, l.desc.Size) }

// ReadAt reads len(p) bytes of file e's content from off. It returns
// io.EOF when fewer bytes remain, like io.ReaderAt.
func (l *Layer) ReadAt(ctx context.Context, e *index.Entry, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s at %d: negative offset", e.Name, off)
	}
	w := readWait{ctx: ctx, limit: l.readLimit}
	defer w.end()
	n := 0
	for n < len(p) && off < e.Size {
		c, ok := e.ChunkAt(off)
		if !ok {
			return n, fmt.Errorf("read %s at %d: no chunk", e.Name, off)
		}
		k, err := l.readChunk(&w, e, c, p[n:], off)
		n += k
		off += int64(k)
		if err != nil {
			return n, boundError(w.ctx, err)
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readChunk reads into p what it wants of chunk c of e from file offset
// off: zeros for a run of them (never allocated: the TOC gives their
// size), else from the cache (chunks.go), the file's whole-file entry
// (wholefile.go) or a fetch (fetch.go).
func (l *Layer) readChunk(w *readWait, e *index.Entry, c index.Chunk, p []byte, off int64) (int, error) {
	if c.Zero {
		k := int(min(int64(len(p)), c.End()-off))
		clear(p[:k])
		return k, nil
	}
	if k, ok := l.readCached(c, p, off); ok {
		return k, nil
	}
	if k, ok := l.readWhole(e, p, off); ok {
		return k, nil
	}
	i := slices.IndexFunc(e.Chunks, func(x index.Chunk) bool { return x.Offset == c.Offset })
	data, err := l.chunk(w.bounded(), chunkRef{e, i})
	if err != nil {
		return 0, err
	}
	return copy(p, data[off-c.Offset:]), nil
}

// Close stops the layer's fetches, prefetch and background fetch and
// waits for them and for the cache writes they started. The layer's
// chunks stay in the cache. It is idempotent.
func (l *Layer) Close() error {
	l.closed.Do(func() {
		l.mu.Lock()
		l.stopping = true
		l.mu.Unlock()
		l.cancel()
		l.wg.Wait()
		l.held.clear()
		l.unpinAll()
		if l.onClose != nil {
			l.onClose()
		}
	})
	return nil
}

// spawn starts f as a goroutine the layer owns, unless Close began. It
// reports whether it started.
func (l *Layer) spawn(f func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopping {
		return false
	}
	l.wg.Go(f)
	return true
}
