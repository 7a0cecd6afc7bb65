// SPDX-License-Identifier: Apache-2.0

package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/cachedir"
	"github.com/stargz-store/stargz-store/store/index"
)

// What the store keeps in the cache (cachedir): chunks, under the digest
// of their bytes (chunkCacheKey); a layer's blob copy for its blob file,
// manifests and configs, under theirs (blob.go, source.go); and two kinds
// of records under names of the store's own: a layer's TOC ranges (here)
// and a file's whole content (wholefile.go).
//
// A layer's TOC is cached as the blob ranges the format reader read while
// opening it (footer and compressed TOC), in a record named after the
// blob and TOC digests. The ranges are not checked by the cache: the
// format reader verifies the TOC against desc.TOCDigest on every open, so
// a damaged record fails verification and the layer is opened from the
// registry instead.

// tocMagic starts a cached TOC record; the version is in it.
const tocMagic = "stargz-store toc ranges v1\n"

// maxTOCRecord bounds a cached TOC record read back.
const maxTOCRecord = 256 << 20

// tocKey is the key of the cache record of a layer's TOC ranges: an
// unchecked record, which the format reader verifies.
func tocKey(desc LayerDesc) cachedir.Key {
	name := digest.FromString(tocMagic + string(desc.Format) + "\n" + desc.Digest.String() + "\n" + desc.TOCDigest.String())
	return cachedir.Record(name, "")
}

// chunkCacheKey is the key of chunk c's cache entry: its bytes, which
// hash to c.Digest and are c.Size long. A TOC that gives a digest
// another size than the content it names finds no entry.
func chunkCacheKey(c index.Chunk) cachedir.Key {
	return cachedir.Content(c.Digest).Sized(c.Size)
}

// segment is one range of the blob.
type segment struct {
	off  int64
	data []byte
}

// recordingReader serves reads from recorded segments when it can and
// from the blob otherwise, and records every range it served.
type recordingReader struct {
	ctx  context.Context
	blob BlobReader

	// mu guards the fields below.
	mu    sync.Mutex
	segs  []segment // what it can serve from
	used  []segment // what the format reader read: the record to cache
	fresh bool      // a read went to the blob
}

func (r *recordingReader) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	head := len(p) // bytes of p to read from the blob
	var from segment
	for _, s := range r.segs {
		end := s.off + int64(len(s.data))
		if off >= s.off && off+int64(len(p)) <= end {
			head = 0
			from = s
			break
		}
		// The read ends in s: only its head is missing (a TOC that
		// starts before the tail window).
		if off < s.off && off+int64(len(p)) > s.off && off+int64(len(p)) <= end && int(s.off-off) < head {
			head = int(s.off - off)
			from = s
		}
	}
	r.mu.Unlock()
	if head < len(p) {
		copy(p[head:], from.data[off+int64(head)-from.off:])
	}
	n := len(p)
	var err error
	if head > 0 {
		var k int
		k, err = r.blob.ReadAt(r.ctx, p[:head], off)
		if k < head {
			n = k
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
		} else if errors.Is(err, io.EOF) && head < len(p) {
			err = nil
		}
	}
	if n > 0 && (err == nil || errors.Is(err, io.EOF)) {
		r.mu.Lock()
		r.used = append(r.used, segment{off, bytes.Clone(p[:n])})
		r.fresh = r.fresh || head > 0
		r.mu.Unlock()
	}
	return n, err
}

// tailWindowMin and tailWindowMax bound the blob tail read when a layer is
// opened from the registry: the footer and, for most layers, the whole
// TOC in one request.
var tailWindowMin, tailWindowMax int64 = 64 << 10, 1 << 20

// tailWindow guesses from the blob size how much of its tail holds the
// footer and the TOC: 1/128 of the blob (a TOC grows with the files),
// within [tailWindowMin, tailWindowMax].
func tailWindow(size int64) int64 {
	return min(size, max(tailWindowMin, min(tailWindowMax, size/128)))
}

// readTail reads the blob's tail window into r in one request, so that
// the format reader finds its footer and usually its TOC there. Only
// eStargz is read this way: its footer and TOC end the blob.
func (r *recordingReader) readTail(desc LayerDesc, ahead *tailFetch) error {
	if desc.Format != FormatEStargz || desc.Size <= 0 {
		return nil
	}
	w := tailWindow(desc.Size)
	if ahead != nil {
		off, data, err := ahead.wait(r.ctx)
		switch {
		case err == nil && off == desc.Size-w && int64(len(data)) == w:
			r.mu.Lock()
			r.segs = append(r.segs, segment{off, data})
			r.fresh = true
			r.mu.Unlock()
			return nil
		case err != nil && r.ctx.Err() == nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded):
			return err // it was retried already; cancelled ones are read again below
		}
	}
	buf := make([]byte, w)
	n, err := r.blob.ReadAt(r.ctx, buf, desc.Size-w)
	if int64(n) != w {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return fmt.Errorf("read the last %d bytes: %w", w, err)
	}
	r.mu.Lock()
	r.segs = append(r.segs, segment{desc.Size - w, buf})
	r.fresh = true
	r.mu.Unlock()
	return nil
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
// cache when they are there. When they came from the registry it returns
// the record to cache, for the caller to write off the open's critical
// path (the write ends in an fsync).
func openCached(ctx context.Context, open openFunc, blob BlobReader, desc LayerDesc, opts LayerOptions) (*opened, func(context.Context), error) {
	fromBlob := func() (*recordingReader, *opened, error) {
		r := &recordingReader{ctx: ctx, blob: blob}
		if err := r.readTail(desc, opts.tail); err != nil {
			return nil, nil, err
		}
		f, err := open(ctx, r, desc, opts)
		return r, f, err
	}
	if opts.Cache == nil {
		_, f, err := fromBlob()
		return f, nil, err
	}
	key := tocKey(desc)
	r := &recordingReader{ctx: ctx, blob: blob}
	if b, err := opts.Cache.ReadAll(key, maxTOCRecord); err == nil {
		if segs, err := decodeSegments(b); err == nil {
			r.segs = segs
		}
	}
	cached := len(r.segs) > 0
	var f *opened
	var err error
	if cached {
		f, err = open(ctx, r, desc, opts)
		if err != nil && ctx.Err() == nil {
			// A damaged record (or a reader that wants other ranges
			// now): forget it and read from the registry.
			if rerr := opts.Cache.Remove(key); rerr != nil {
				return nil, nil, fmt.Errorf("%w (and removing the cached TOC: %w)", err, rerr)
			}
			r, f, err = fromBlob()
		}
	} else {
		r, f, err = fromBlob()
	}
	if err != nil {
		return nil, nil, err
	}
	if !r.fresh {
		return f, nil, nil
	}
	r.mu.Lock()
	rec := encodeSegments(slices.Clone(r.used))
	r.mu.Unlock()
	write := func(ctx context.Context) {
		// Replace what is there: a record that lacked a range, or one
		// that was damaged beyond decoding.
		_ = opts.Cache.Remove(key)
		if err := opts.Cache.Put(ctx, key, rec); err != nil && opts.Logger != nil {
			opts.Logger.Debug("cache TOC", "digest", desc.Digest.String(), "err", err)
		}
	}
	return f, write, nil
}
