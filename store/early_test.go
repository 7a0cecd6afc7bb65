// SPDX-License-Identifier: Apache-2.0

package store

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/stargz-store/stargz-store/cachedir"
	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/store/remote"
)

// trickleBlob answers range requests from memory in two steps, as a slow
// link does: the first `head` bytes of the first span, reported through
// fill, then (once gate is closed) the rest.
type trickleBlob struct {
	b     []byte
	head  int64
	gate  chan struct{}
	reads int
}

func (t *trickleBlob) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	t.reads++
	return bytes.NewReader(t.b).ReadAt(p, off)
}

func (t *trickleBlob) readRanges(ctx context.Context, spans []remote.Span, bufs [][]byte, _ fetchKind, fill remote.Fill) error {
	t.reads++
	n := min(t.head, spans[0].Len())
	copy(bufs[0][:n], t.b[spans[0].Off:])
	fill.Done(0, n)
	select {
	case <-t.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	for i, s := range spans {
		copy(bufs[i], t.b[s.Off:s.End])
		fill.Done(i, s.Len())
	}
	return nil
}

// TestReadReturnsBeforeReadAhead: a read whose fetch also reads ahead
// gets its chunk as soon as that chunk has arrived, while the read-ahead
// is still on the wire; each read-ahead chunk is kept as it arrives, and
// they serve the next reads.
func TestReadReturnsBeforeReadAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 3 chunks of 8 KiB, each its own content (the cache is keyed by content).
		data := strings.Repeat("0123456789abcdef", 8192/16) + strings.Repeat("ghijklmnopqrstuv", 8192/16) + strings.Repeat("wxyzWXYZ01234567", 8192/16)
		tl := testutil.ESGZLayer(t, testutil.Tar(t, testutil.File{Name: "f", Data: data}), testutil.ESGZOptions{ChunkSize: 8192})
		cache, err := cachedir.Open(t.TempDir(), cachedir.Options{MaxSize: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		defer cache.Close()
		blob := &trickleBlob{b: tl.Blob}
		desc := LayerDesc{Digest: tl.Desc.Digest, Size: tl.Desc.Size, TOCDigest: tl.TOCDigest}
		l, err := OpenLayer(t.Context(), blob, desc, LayerOptions{Cache: cache, ReadAhead: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		e, _ := l.Index().Lookup("f")
		c0, c1 := e.Chunks[0], e.Chunks[1]
		blob.head = c1.CompressedEnd - c0.CompressedOffset // chunks 0 and 1, not 2
		blob.gate = make(chan struct{})
		blob.reads = 0

		got := make(chan []byte, 1)
		go func() {
			buf := make([]byte, 8192)
			n, err := l.ReadAt(context.Background(), e, buf, 0)
			if err != nil && !errors.Is(err, io.EOF) {
				t.Errorf("ReadAt() = %v", err)
			}
			got <- buf[:n]
		}()
		synctest.Wait() // the answer is held after chunk 0
		select {
		case b := <-got:
			if string(b) != data[:8192] {
				t.Error("chunk 0: wrong content")
			}
		default:
			t.Fatal("the read waited for the read-ahead behind its chunk")
		}
		// Chunk 1 was decoded and kept on the way too; chunk 2 is still out.
		if _, ok := l.lookup(chunkRef{e, 1}); !ok {
			t.Error("chunk 1 was not kept when its bytes were in")
		}
		if _, ok := l.lookup(chunkRef{e, 2}); ok {
			t.Error("chunk 2 kept before its bytes came")
		}
		close(blob.gate)
		synctest.Wait()
		buf := make([]byte, len(data))
		if n, err := l.ReadAt(context.Background(), e, buf, 0); n != len(data) || err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("ReadAt(whole) = %d, %v", n, err)
		}
		if string(buf) != data {
			t.Error("whole file: wrong content")
		}
		if blob.reads != 1 {
			t.Errorf("registry reads = %d, want 1 (the read-ahead served the rest)", blob.reads)
		}
	})
}
