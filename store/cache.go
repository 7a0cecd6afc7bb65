// SPDX-License-Identifier: Apache-2.0

package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store/index"
)

// A layer's TOC is cached as the blob ranges the format reader read while
// opening it (footer and compressed TOC), under a key named after the blob
// and TOC digests. The ranges are not trusted: the format reader verifies
// the TOC against desc.TOCDigest on every open, so a damaged entry fails
// verification and the layer is opened from the registry instead.

// tocMagic starts a cached TOC record; the version is in it.
const tocMagic = "stargz-store toc ranges v1\n"

// maxTOCRecord bounds a cached TOC record read back.
const maxTOCRecord = 256 << 20

// tocKey names the cache entry of a layer's TOC ranges.
func tocKey(desc LayerDesc) digest.Digest {
	return digest.FromString(tocMagic + string(desc.Format) + "\n" + desc.Digest.String() + "\n" + desc.TOCDigest.String())
}

// segment is one range of the blob.
type segment struct {
	off  int64
	data []byte
}

// recordingReader serves reads from recorded segments when it can and
// from the blob otherwise, recording what the blob returned.
type recordingReader struct {
	ctx  context.Context
	blob BlobReader

	// mu guards the fields below.
	mu    sync.Mutex
	segs  []segment
	fresh bool // a segment came from the blob
}

func (r *recordingReader) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	for _, s := range r.segs {
		if off >= s.off && off+int64(len(p)) <= s.off+int64(len(s.data)) {
			n := copy(p, s.data[off-s.off:])
			r.mu.Unlock()
			return n, nil
		}
	}
	r.mu.Unlock()
	n, err := r.blob.ReadAt(r.ctx, p, off)
	if n > 0 && (err == nil || errors.Is(err, io.EOF)) {
		r.mu.Lock()
		r.segs = append(r.segs, segment{off, bytes.Clone(p[:n])})
		r.fresh = true
		r.mu.Unlock()
	}
	return n, err
}

func encodeSegments(segs []segment) []byte {
	var b bytes.Buffer
	b.WriteString(tocMagic)
	for _, s := range segs {
		b.Write(binary.BigEndian.AppendUint64(nil, uint64(s.off)))
		b.Write(binary.BigEndian.AppendUint64(nil, uint64(len(s.data))))
		b.Write(s.data)
	}
	return b.Bytes()
}

func decodeSegments(b []byte) ([]segment, error) {
	rest, ok := bytes.CutPrefix(b, []byte(tocMagic))
	if !ok {
		return nil, errors.New("not a TOC record")
	}
	var segs []segment
	for len(rest) > 0 {
		if len(rest) < 16 {
			return nil, errors.New("truncated TOC record")
		}
		off, n := binary.BigEndian.Uint64(rest), binary.BigEndian.Uint64(rest[8:])
		rest = rest[16:]
		if off > 1<<62 || n > uint64(len(rest)) {
			return nil, errors.New("bad TOC record segment")
		}
		segs = append(segs, segment{int64(off), rest[:n]})
		rest = rest[n:]
	}
	return segs, nil
}

// openCached runs the format opener, reading the footer and TOC from the
// cache when they are there, and caches them when they came from the
// registry.
func openCached(ctx context.Context, open openFunc, blob BlobReader, desc LayerDesc, opts LayerOptions) (*opened, error) {
	if opts.Cache == nil {
		return open(readerAt{ctx, blob}, desc, opts)
	}
	key := tocKey(desc)
	r := &recordingReader{ctx: ctx, blob: blob}
	if b, err := opts.Cache.ReadAll(key); err == nil && len(b) <= maxTOCRecord {
		if segs, err := decodeSegments(b); err == nil {
			r.segs = segs
		}
	}
	cached := len(r.segs) > 0
	f, err := open(r, desc, opts)
	if err != nil && cached && ctx.Err() == nil {
		// A damaged record (or a reader that wants other ranges now):
		// forget it and read from the registry.
		if rerr := opts.Cache.Remove(key); rerr != nil {
			return nil, fmt.Errorf("%w (and removing the cached TOC: %w)", err, rerr)
		}
		r = &recordingReader{ctx: ctx, blob: blob}
		f, err = open(r, desc, opts)
	}
	if err != nil {
		return nil, err
	}
	if r.fresh {
		r.mu.Lock()
		segs := slices.Clone(r.segs)
		r.mu.Unlock()
		if cached { // the record lacked a range: replace it
			_ = opts.Cache.Remove(key)
		}
		if err := opts.Cache.PutNamed(ctx, key, encodeSegments(segs)); err != nil && opts.Logger != nil {
			opts.Logger.Debug("cache TOC", "digest", desc.Digest.String(), "err", err)
		}
	}
	return f, nil
}

// CachedFile opens the cache file that holds exactly the content of the
// regular file e, when there is one: e is a single chunk and that chunk
// is on disk. The caller closes the file. FUSE passthrough can hand it to
// the kernel, which then reads it without the daemon. Cache files were
// verified against their digest when they were written.
func (l *Layer) CachedFile(e *index.Entry) (*os.File, bool) {
	if l.cache == nil || e.Type != index.TypeReg || len(e.Chunks) != 1 {
		return nil, false
	}
	c := e.Chunks[0]
	if c.Zero || c.Offset != 0 || c.Size != e.Size {
		return nil, false
	}
	f, err := l.cache.Get(c.Digest)
	if err != nil {
		return nil, false
	}
	return f, true
}
