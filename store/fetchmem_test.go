// SPDX-License-Identifier: Apache-2.0

package store

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/metrics"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/cachedir"
	"github.com/stargz-store/stargz-store/internal/limit"
	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/store/estargz"
	"github.com/stargz-store/stargz-store/store/index"
	"github.com/stargz-store/stargz-store/store/remote"
)

// patternFile is a file of a synthetic tar: size bytes repeating a text
// of a prime length, so that every chunk of it has its own content, and
// that gzip shrinks about 500 times.
type patternFile struct {
	name string
	size int64
}

// pattern is the text patternFile repeats.
var pattern = func() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < 251; i++ {
		fmt.Fprintf(&b, "line %d of a file that compresses well\n", i)
	}
	return b.Bytes()[:251]
}()

// patternAt fills p with a patternFile's content from off.
func patternAt(p []byte, off int64) {
	for i := range p {
		p[i] = pattern[(off+int64(i))%int64(len(pattern))]
	}
}

// synthTar is a tar of patternFiles that is generated as it is read, so
// that a layer of hundreds of MiB costs no memory to build.
type synthTar struct {
	parts []tarPart
	size  int64
}

// tarPart is a header (hdr set) or a file's content at off in the tar.
type tarPart struct {
	off, len int64
	hdr      []byte
}

func newSynthTar(t testing.TB, files ...patternFile) *synthTar {
	t.Helper()
	st := &synthTar{}
	for _, f := range files {
		var hb bytes.Buffer
		tw := tar.NewWriter(&hb)
		h := &tar.Header{Name: f.name, Mode: 0o644, Size: f.size, Typeflag: tar.TypeReg,
			ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		st.add(tarPart{len: int64(hb.Len()), hdr: hb.Bytes()})
		st.add(tarPart{len: f.size})
		st.add(tarPart{len: (512 - f.size%512) % 512, hdr: []byte{}}) // padding
	}
	st.add(tarPart{len: 1024, hdr: []byte{}}) // end of archive
	return st
}

func (s *synthTar) add(p tarPart) {
	p.off = s.size
	s.parts = append(s.parts, p)
	s.size += p.len
}

func (s *synthTar) ReadAt(p []byte, off int64) (int, error) {
	n := 0
	i := sort.Search(len(s.parts), func(i int) bool { return s.parts[i].off+s.parts[i].len > off })
	for ; n < len(p) && i < len(s.parts); i++ {
		pt := s.parts[i]
		at := off + int64(n) - pt.off
		k := int(min(int64(len(p)-n), pt.len-at))
		switch {
		case pt.hdr == nil:
			patternAt(p[n:n+k], at)
		case int64(len(pt.hdr)) == pt.len:
			copy(p[n:n+k], pt.hdr[at:])
		default:
			clear(p[n : n+k])
		}
		n += k
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// synthLayer builds an eStargz layer of files, the first ones
// prioritized, with chunk chunks.
func synthLayer(t testing.TB, chunk int, prioritized []string, files ...patternFile) ([]byte, LayerDesc) {
	t.Helper()
	tr := newSynthTar(t, files...)
	var blob bytes.Buffer
	res, err := estargz.Build(t.Context(), &blob, tr, tr.size, estargz.BuildOptions{ChunkSize: chunk, PrioritizedFiles: prioritized})
	if err != nil {
		t.Fatal(err)
	}
	return blob.Bytes(), LayerDesc{Digest: res.Digest, Size: res.Size, TOCDigest: res.TOCDigest, Format: FormatEStargz}
}

// countedBlob is a rangeBlob that counts its requests.
type countedBlob struct {
	rangeBlob
	requests atomic.Int64
}

func (c *countedBlob) readRanges(ctx context.Context, spans []remote.Span, bufs [][]byte, kind fetchKind, fill remote.Fill) error {
	c.requests.Add(1)
	return c.rangeBlob.readRanges(ctx, spans, bufs, kind, fill)
}

// heapPeak samples the bytes of heap objects (live, and dead ones not
// yet swept) every millisecond until stop is called, which returns the
// largest sample.
func heapPeak() (stop func() uint64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			if v := read(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak.Load()
	}
}

// heapNow returns the bytes of live heap objects, after a collection.
func heapNow() uint64 {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}

// checkContent reads e, a patternFile, through l in 1 MiB reads and
// checks every byte.
func checkContent(t *testing.T, l *Layer, e *index.Entry) {
	t.Helper()
	p, want := make([]byte, 1<<20), make([]byte, 1<<20)
	for off := int64(0); off < e.Size; off += int64(len(p)) {
		n, err := l.ReadAt(t.Context(), e, p, off)
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("ReadAt(%s, %d) = %v", e.Name, off, err)
		}
		patternAt(want[:n], off)
		if n != int(min(int64(len(p)), e.Size-off)) || !bytes.Equal(p[:n], want[:n]) {
			t.Fatalf("ReadAt(%s, %d): %d bytes, content differs", e.Name, off, n)
		}
	}
}

// TestPrefetchHostileRegionBoundedMemory: a layer whose prefetch region
// decodes to 256 MiB (a landmark placed after a huge prioritized file) is
// prefetched in pieces, with the fetches never holding more than their
// budget and the heap staying far below the region; half the cache at
// most stays pinned; every byte read back is right.
func TestPrefetchHostileRegionBoundedMemory(t *testing.T) {
	testutil.CheckLeaks(t)
	const region, budget, cacheSize = 256 << 20, 32 << 20, 128 << 20
	blob, desc := synthLayer(t, 4<<20, []string{"big"}, patternFile{"big", region}, patternFile{"small", 1000})
	cache, err := cachedir.Open(t.TempDir(), cachedir.Options{MaxSize: cacheSize, MemorySize: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer cache.Close()
	rb := &countedBlob{rangeBlob: rangeBlob{b: blob}}
	mem := newFetchBudget(budget)
	l, err := OpenLayer(t.Context(), rb, desc, LayerOptions{Cache: cache, mem: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.PrefetchEnd() <= 0 {
		t.Fatal("no prefetch landmark")
	}
	base := heapNow()
	stop := heapPeak()
	err = l.prefetch(t.Context())
	l.wg.Wait() // the cache writes
	peak := stop()
	if err != nil {
		t.Fatalf("prefetch() = %v", err)
	}
	t.Logf("blob %d bytes; prefetch: %d requests, budget peak %d, heap peak %d MiB above %d MiB",
		len(blob), rb.requests.Load(), mem.lim.Peak(), (peak-base)>>20, base>>20)
	if p := mem.lim.Peak(); p > budget/2 {
		t.Errorf("fetches held %d bytes, more than the %d background work may", p, budget/2)
	}
	if grow := peak - min(peak, base); grow > 4*budget {
		t.Errorf("heap grew by %d MiB during the prefetch of %d MiB, more than 4 budgets (%d MiB)", grow>>20, region>>20, 4*budget>>20)
	}
	if n := rb.requests.Load(); n < 2 {
		t.Errorf("prefetch of %d MiB in %d request(s), want pieces", region>>20, n)
	}
	l.pre.mu.Lock()
	pinned := l.pre.pinned
	l.pre.mu.Unlock()
	if pinned == 0 || pinned > cacheSize/2 {
		t.Errorf("prefetch pinned %d bytes, want some and at most half the cache (%d)", pinned, cacheSize/2)
	}
	e, _ := l.Index().Lookup("big")
	checkContent(t, l, e)
}

// TestChunkLargerThanBudget: a chunk heavier than the whole budget is
// fetched alone, with the budget's weight, and reads never deadlock.
func TestChunkLargerThanBudget(t *testing.T) {
	testutil.CheckLeaks(t)
	blob, desc := synthLayer(t, 4<<20, nil, patternFile{"f", 12 << 20})
	mem := newFetchBudget(1 << 20)
	l, err := OpenLayer(t.Context(), &rangeBlob{b: blob}, desc, LayerOptions{ReadAhead: 64 << 20, mem: mem})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	e, _ := l.Index().Lookup("f")
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() { checkContent(t, l, e) })
	}
	wg.Wait()
	if p := mem.lim.Peak(); p > 1<<20 {
		t.Errorf("budget peak %d, more than the budget", p)
	}
}

// stallBackground serves a blob from memory but holds background
// requests until release is closed.
type stallBackground struct {
	rangeBlob
	release chan struct{}
	held    atomic.Int32
}

func (s *stallBackground) readRanges(ctx context.Context, spans []remote.Span, bufs [][]byte, kind fetchKind, fill remote.Fill) error {
	if kind == fetchBackground {
		s.held.Add(1)
		select {
		case <-s.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.rangeBlob.readRanges(ctx, spans, bufs, kind, fill)
}

// TestReadsProceedWhileBackgroundHoldsBudget: background fetches that
// hold all the memory background work may use (their requests stalled)
// neither keep a file read waiting nor take more.
func TestReadsProceedWhileBackgroundHoldsBudget(t *testing.T) {
	blob, desc := synthLayer(t, 64<<10, nil, patternFile{"a", 4 << 20}, patternFile{"b", 4 << 20}, patternFile{"c", 4 << 20})
	synctest.Test(t, func(t *testing.T) {
		cache, err := cachedir.Open(t.TempDir(), cachedir.Options{MaxSize: 1 << 30, MemorySize: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer cache.Close()
		sb := &stallBackground{rangeBlob: rangeBlob{b: blob}, release: make(chan struct{})}
		// Pieces of up to 1.75 MiB; background work may hold 2 MiB.
		mem := newFetchBudget(4 << 20)
		l, err := OpenLayer(t.Context(), sb, desc, LayerOptions{Cache: cache, mem: mem})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		var es []*index.Entry
		for _, name := range []string{"a", "b", "c"} {
			e, _ := l.Index().Lookup(name)
			es = append(es, e)
		}
		// Background fetches of a and c: the first piece holds most of
		// what background work may use, the next waits for it.
		var bgs sync.WaitGroup
		for _, e := range []*index.Entry{es[0], es[2]} {
			bgs.Go(func() {
				c := l.fetches.claim(chunkRefsOf(e))
				if _, err := l.fetchRefs(l.ctx, c, fetchBackground, 0, nil); err != nil {
					t.Errorf("background fetch of %s = %v", e.Name, err)
				}
			})
		}
		synctest.Wait()
		if busy := mem.lim.Peak(); busy > mem.lim.Max(limit.Background) || sb.held.Load() != 1 {
			t.Fatalf("background holds %d of the budget in %d requests; want at most %d in 1", busy, sb.held.Load(), mem.lim.Max(limit.Background))
		}
		checkContent(t, l, es[1]) // does not wait for the background fetches
		if sb.held.Load() != 1 {
			t.Errorf("%d background requests while the first is held, want 1", sb.held.Load())
		}
		close(sb.release)
		bgs.Wait()
		checkContent(t, l, es[0])
		checkContent(t, l, es[2])
	})
}

// chunkRefsOf lists e's chunks.
func chunkRefsOf(e *index.Entry) []chunkRef {
	var refs []chunkRef
	for i := range e.Chunks {
		refs = append(refs, chunkRef{e, i})
	}
	return refs
}

// gatedBlob holds the first request until first is closed, the others
// until rest is.
type gatedBlob struct {
	rangeBlob
	first, rest chan struct{}
	requests    atomic.Int32
}

func (g *gatedBlob) readRanges(ctx context.Context, spans []remote.Span, bufs [][]byte, kind fetchKind, fill remote.Fill) error {
	gate := g.rest
	if g.requests.Add(1) == 1 {
		gate = g.first
	}
	select {
	case <-gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.rangeBlob.readRanges(ctx, spans, bufs, kind, fill)
}

// TestReaderWakesWhenItsPieceEnds: a read waiting for a chunk that a
// fetch of several pieces is bringing gets it when the chunk's piece
// ends, not when the whole fetch does.
func TestReaderWakesWhenItsPieceEnds(t *testing.T) {
	blob, desc := synthLayer(t, 64<<10, nil, patternFile{"f", 8 << 20})
	synctest.Test(t, func(t *testing.T) {
		gb := &gatedBlob{rangeBlob: rangeBlob{b: blob}, first: make(chan struct{}), rest: make(chan struct{})}
		mem := newFetchBudget(4 << 20) // pieces of up to 1.75 MiB
		l, err := OpenLayer(t.Context(), gb, desc, LayerOptions{mem: mem})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		e, _ := l.Index().Lookup("f")
		refs := chunkRefsOf(e)
		if n := len(planPieces(refs, mergeGap, mem.pieces)); n < 2 {
			t.Fatalf("%d pieces, want several", n)
		}
		c := l.fetches.claim(refs)
		go l.fetchRefs(l.ctx, c, fetchPrefetch, 0, nil)
		synctest.Wait() // the first piece's request is held
		got := make(chan error, 1)
		p := make([]byte, 1000)
		go func() {
			_, err := l.ReadAt(t.Context(), e, p, 0)
			got <- err
		}()
		synctest.Wait() // the read waits for the fetch
		close(gb.first)
		synctest.Wait() // the second piece's request is held
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("ReadAt() = %v", err)
			}
		default:
			t.Fatal("the read still waits, for the rest of the fetch")
		}
		want := make([]byte, len(p))
		patternAt(want, 0)
		if !bytes.Equal(p, want) {
			t.Error("ReadAt(): wrong content")
		}
		if n := gb.requests.Load(); n != 2 {
			t.Errorf("%d requests, want 2 (the read joined the fetch)", n)
		}
		close(gb.rest)
	})
}

func TestPlanPieces(t *testing.T) {
	// chunk i: compressed [100*i, 100*i+100), 300 bytes decoded.
	e := &index.Entry{}
	for i := range 10 {
		e.Chunks = append(e.Chunks, index.Chunk{Offset: int64(300 * i), Size: 300,
			CompressedOffset: int64(100 * i), CompressedEnd: int64(100*i + 100), Digest: digest.FromString("x")})
	}
	ref := func(i int) chunkRef { return chunkRef{e, i} }
	tests := []struct {
		name string
		refs []int
		gap  int64
		lim  pieceLimits
		want [][]int // chunks of each piece
	}{
		{"one piece", []int{0, 1, 2, 3}, 16, pieceLimits{span: 1000, weight: 10000}, [][]int{{0, 1, 2, 3}}},
		{"cut by span", []int{0, 1, 2, 3, 4}, 16, pieceLimits{span: 200, weight: 10000}, [][]int{{0, 1}, {2, 3}, {4}}},
		// 2*100 + 100 + 300 = 600 per chunk
		{"cut by weight", []int{0, 1, 2}, 16, pieceLimits{span: 1000, weight: 1200}, [][]int{{0, 1}, {2}}},
		{"lead piece first", []int{4, 0, 1, 5}, 16, pieceLimits{span: 200, weight: 10000}, [][]int{{4, 5}, {0, 1}}},
		{"lead chunk first", []int{1, 0, 2}, 16, pieceLimits{span: 1000, weight: 10000}, [][]int{{1, 0, 2}}},
		{"chunk larger than a piece", []int{0, 1}, 16, pieceLimits{span: 50, weight: 10}, [][]int{{0}, {1}}},
		{"far apart: two ranges", []int{0, 9}, 16, pieceLimits{span: 250, weight: 10000}, [][]int{{0, 9}}},
		{"merged hole counts", []int{0, 2}, 150, pieceLimits{span: 250, weight: 10000}, [][]int{{0}, {2}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var refs []chunkRef
			for _, i := range tt.refs {
				refs = append(refs, ref(i))
			}
			pieces := planPieces(refs, tt.gap, tt.lim)
			var got [][]int
			for _, p := range pieces {
				var ids []int
				for _, r := range p.refs {
					ids = append(ids, r.i)
				}
				got = append(got, ids)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("planPieces(%v) = %v, want %v", tt.refs, got, tt.want)
			}
		})
	}
}

// TestPlanPiecesKeepsPrefetchOneRequest: with the default budget a
// prefetch of 4.7 MB (decoding to three times that) is one piece, as it
// was one request before pieces.
func TestPlanPiecesKeepsPrefetchOneRequest(t *testing.T) {
	e := &index.Entry{}
	const comp = 4_700_000
	for i := range 100 {
		e.Chunks = append(e.Chunks, index.Chunk{Offset: int64(3 * comp / 100 * i), Size: 3 * comp / 100,
			CompressedOffset: int64(comp / 100 * i), CompressedEnd: int64(comp / 100 * (i + 1)), Digest: digest.FromString("x")})
	}
	pieces := planPieces(chunkRefsOf(e), comp, limitsFor(defaultFetchMemory))
	if len(pieces) != 1 || len(pieces[0].spans) != 1 {
		t.Errorf("%d pieces, want 1 of 1 range", len(pieces))
	}
	if w := pieces[0].weight(fetchPrefetch); w > defaultFetchMemory/2 {
		t.Errorf("weight %d, more than background may hold", w)
	}
}

// TestReadZeroRunAllocatesNothing: a run of zeros the TOC says is 1 TiB
// long is read without allocating it.
func TestReadZeroRunAllocatesNothing(t *testing.T) {
	blob, desc := synthLayer(t, 0, nil, patternFile{"f", 10})
	l, err := OpenLayer(t.Context(), &rangeBlob{b: blob}, desc, LayerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	e := &index.Entry{ID: 99, Name: "sparse", Type: index.TypeReg, Size: 1 << 40,
		Chunks: []index.Chunk{{Offset: 0, Size: 1 << 40, Zero: true}}}
	p := bytes.Repeat([]byte{1}, 4096)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n, err := l.ReadAt(t.Context(), e, p, 1<<39)
	runtime.ReadMemStats(&after)
	if n != len(p) || err != nil || !bytes.Equal(p, make([]byte, len(p))) {
		t.Fatalf("ReadAt() = %d, %v; want %d zeros", n, err, len(p))
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("ReadAt() of a zero run allocated %d bytes", grew)
	}
}
