// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/internal/flight"
	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/store/index"
)

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
}

// chunkKey names a chunk by file and offset in the file, never by
// compressed offset: small-file packing puts several chunks in one member.
type chunkKey struct {
	entry uint32
	off   int64
}

// Layer is one lazily readable, verified layer. Every byte it returns from
// the layer's files has been checked against its chunk digest. A Layer is
// safe for concurrent use; Close stops its fetches.
type Layer struct {
	id     uint32
	desc   LayerDesc
	blob   BlobReader
	fmt    *opened
	log    *slog.Logger
	fetch  *flight.Group[chunkKey, []byte]
	closed sync.Once

	// mu guards the fields below.
	mu     sync.RWMutex
	chunks map[chunkKey][]byte // verified chunk contents, kept while the layer lives
}

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
	f, err := open(readerAt{ctx, blob}, desc, opts)
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
	return &Layer{
		id:     lastLayerID.Add(1),
		desc:   desc,
		blob:   blob,
		fmt:    f,
		log:    log,
		fetch:  flight.New[chunkKey, []byte](ctx),
		chunks: map[chunkKey][]byte{},
	}, nil
}

// readerAt binds a BlobReader to a context for the format readers, which
// take an io.ReaderAt.
type readerAt struct {
	ctx context.Context
	r   BlobReader
}

func (r readerAt) ReadAt(p []byte, off int64) (int, error) { return r.r.ReadAt(r.ctx, p, off) }

// Index returns the layer's table of contents.
func (l *Layer) Index() *index.Index { return l.fmt.index }

// Desc returns the descriptor the layer was opened with.
func (l *Layer) Desc() LayerDesc { return l.desc }

// ID returns a number unique among the layers of this process, never 0.
func (l *Layer) ID() uint32 { return l.id }

// PrefetchEnd returns the end of the blob region the image author marked
// for prefetch, or 0.
func (l *Layer) PrefetchEnd() int64 { return l.fmt.prefetchEnd }

// ReadAt reads len(p) bytes of file e's content from off. It returns
// io.EOF when fewer bytes remain, like io.ReaderAt.
func (l *Layer) ReadAt(ctx context.Context, e *index.Entry, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read %s at %d: negative offset", e.Name, off)
	}
	n := 0
	for n < len(p) && off < e.Size {
		c, ok := e.ChunkAt(off)
		if !ok {
			return n, fmt.Errorf("read %s at %d: no chunk", e.Name, off)
		}
		data, err := l.chunk(ctx, e, c)
		if err != nil {
			return n, err
		}
		k := copy(p[n:], data[off-c.Offset:])
		n += k
		off += int64(k)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// chunk returns the verified content of chunk c of e, fetching it once.
func (l *Layer) chunk(ctx context.Context, e *index.Entry, c index.Chunk) ([]byte, error) {
	if c.Zero {
		return make([]byte, c.Size), nil
	}
	key := chunkKey{e.ID, c.Offset}
	l.mu.RLock()
	data, ok := l.chunks[key]
	l.mu.RUnlock()
	if ok {
		return data, nil
	}
	return l.fetch.Do(ctx, key, func(ctx context.Context) ([]byte, error) {
		return l.fetchChunk(ctx, key, e, c)
	})
}

func (l *Layer) fetchChunk(ctx context.Context, key chunkKey, e *index.Entry, c index.Chunk) ([]byte, error) {
	l.mu.RLock()
	data, ok := l.chunks[key] // a call that finished just before ours began
	l.mu.RUnlock()
	if ok {
		return data, nil
	}
	comp := make([]byte, c.CompressedEnd-c.CompressedOffset)
	if _, err := l.blob.ReadAt(ctx, comp, c.CompressedOffset); err != nil {
		return nil, fmt.Errorf("fetch chunk %d of %s: %w", c.Offset, e.Name, err)
	}
	data = make([]byte, c.Size)
	if err := l.fmt.decode(data, comp, c); err != nil {
		return nil, fmt.Errorf("chunk %d of %s: %w", c.Offset, e.Name, err)
	}
	l.mu.Lock()
	l.chunks[key] = data
	l.mu.Unlock()
	l.log.Debug("chunk fetched", "path", e.Name, "off", c.Offset, "bytes", len(comp))
	return data, nil
}

// ReadBlobAt reads the raw compressed blob, as the layer's `blob` file
// serves it. It returns io.EOF at the end like io.ReaderAt.
func (l *Layer) ReadBlobAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read blob at %d: negative offset", off)
	}
	if off >= l.desc.Size {
		return 0, io.EOF
	}
	want := min(int64(len(p)), l.desc.Size-off)
	n, err := l.blob.ReadAt(ctx, p[:want], off)
	if err == nil && int64(n) < int64(len(p)) {
		err = io.EOF
	}
	return n, err
}

// Close stops the layer's fetches and waits for them. It is idempotent.
func (l *Layer) Close() error {
	l.closed.Do(func() {
		l.fetch.Close()
		l.mu.Lock()
		l.chunks = map[chunkKey][]byte{}
		l.mu.Unlock()
	})
	return nil
}
