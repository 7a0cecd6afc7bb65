// SPDX-License-Identifier: Apache-2.0

package store

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stargz-store/stargz-store/cachedir"
	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/store/index"
	"github.com/stargz-store/stargz-store/store/remote"
)

// openCache opens a cache on root for the test; the Manager's cleanup
// (registered later) runs first, as in cmd.
func openCache(t *testing.T, root string, max int64) *cachedir.Dir {
	t.Helper()
	d, err := cachedir.Open(root, cachedir.Options{MaxSize: max})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// cachedEnv is an env whose Manager uses a cache on root.
func cachedEnv(t *testing.T, root string, more func(*Options)) *env {
	t.Helper()
	cache := openCache(t, root, 1<<30)
	return newEnv(t, envOptions{opts: func(o *Options) {
		o.Cache = cache
		o.BackgroundShare = 1
		o.BackgroundDelay = -1
		if more != nil {
			more(o)
		}
	}})
}

func quiet(o *Options) { o.NoPrefetch, o.NoBackgroundFetch = true, true }

func isRangeReq(r testutil.Request) bool { return r.IsRange() }

// readAll reads every regular file of l and checks it against files.
func readAll(t *testing.T, l *Layer, files []testutil.File) {
	t.Helper()
	for _, f := range files {
		if f.Data == "" {
			continue
		}
		if got := readFile(t, l, f.Name); string(got) != f.Data {
			t.Fatalf("%s: read %d bytes, want %d", f.Name, len(got), len(f.Data))
		}
	}
}

func TestConcurrentReadsOfOneChunkFetchOnce(t *testing.T) {
	e := cachedEnv(t, t.TempDir(), quiet)
	ref, img := e.esgzImage(t, "app", "v1", 1)
	l, err := e.m.Layer(t.Context(), ref, img.Layers[0].Desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	e.reg.Reset()
	ent, _ := l.Index().Lookup("bin/big")
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			p := make([]byte, 100)
			if _, err := l.ReadAt(context.Background(), ent, p, 8192+50); err != nil {
				t.Errorf("ReadAt() = %v", err)
			}
		})
	}
	wg.Wait()
	if n := e.reg.Count(isRangeReq); n != 1 {
		t.Errorf("10 concurrent reads of one chunk made %d range requests, want 1", n)
	}
}

func TestAdjacentChunksFetchedInOneRequest(t *testing.T) {
	for _, readAhead := range []int64{0, -1} {
		name := "read-ahead"
		if readAhead < 0 {
			name = "no read-ahead"
		}
		t.Run(name, func(t *testing.T) {
			e := cachedEnv(t, t.TempDir(), func(o *Options) { quiet(o); o.ReadAhead = readAhead })
			ref, img := e.esgzImage(t, "app", "v1", 1)
			l, err := e.m.Layer(t.Context(), ref, img.Layers[0].Desc.Digest)
			if err != nil {
				t.Fatal(err)
			}
			e.reg.Reset()
			ent, _ := l.Index().Lookup("bin/big")
			want := 1
			if readAhead < 0 {
				want = len(ent.Chunks)
			}
			if got := readFile(t, l, "bin/big"); !bytes.Equal(got, bigData()) {
				t.Fatal("bin/big: wrong content")
			}
			if n := e.reg.Count(isRangeReq); n != want {
				t.Errorf("reading %d chunks made %d range requests, want %d", len(ent.Chunks), n, want)
			}
		})
	}
}

func TestWarmAfterReleaseAndRestart(t *testing.T) {
	root := t.TempDir()
	e := cachedEnv(t, root, quiet)
	ref, img := e.esgzImage(t, "app", "v1", 1)
	d := img.Layers[0].Desc.Digest
	files := sampleFiles(t, "v1a")
	if err := e.m.Use(ref, d); err != nil {
		t.Fatal(err)
	}
	l, err := e.m.Layer(t.Context(), ref, d)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, l, files)
	if err := e.m.Release(ref, d); err != nil {
		t.Fatal(err)
	}
	e.reg.Reset()
	l, err = e.m.Layer(t.Context(), ref, d)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, l, files)
	if n := e.reg.Count(testutil.Request.IsBlob); n != 0 {
		t.Errorf("after release: %d blob requests, want 0 (TOC and chunks cached)", n)
	}

	// A restart: a new Manager on the same cache directory.
	e.m.Close()
	o := e.m.opts
	o.Cache = openCache(t, root, 1<<30)
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	e.reg.Reset()
	l, err = m.Layer(t.Context(), ref, d)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, l, files)
	// The manifest and config are fetched again (not cached yet); no
	// range of the layer is.
	if n := e.reg.Count(isRangeReq); n != 0 {
		t.Errorf("after restart: %d range requests, want 0", n)
	}
}

// prefetchImage pushes a layer whose bin/big is prioritized (before the
// landmark) and whose bin/other is not.
func prefetchImage(t *testing.T, e *env) (refspec.Reference, testutil.Layer, []testutil.File) {
	t.Helper()
	other := bytes.Clone(bigData())
	for i := range other {
		other[i] ^= 0x5a
	}
	files := append(sampleFiles(t, "p"), testutil.File{Name: "bin/other", Data: string(other)})
	layer := testutil.ESGZLayer(t, testutil.Tar(t, files...), testutil.ESGZOptions{ChunkSize: 8192, Prioritized: []string{"bin/big"}})
	e.reg.Push(t, "app", "p", testutil.NewImage(t, hostPlatform(), layer))
	return e.ref(t, "app", "p"), layer, files
}

func TestPrefetchOneRequestBeforeLookupReturns(t *testing.T) {
	e := cachedEnv(t, t.TempDir(), func(o *Options) { o.NoBackgroundFetch = true })
	ref, layer, _ := prefetchImage(t, e)
	l, err := e.m.Layer(t.Context(), ref, layer.Desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	end := l.PrefetchEnd()
	if end <= 0 {
		t.Fatal("layer has no prefetch landmark")
	}
	var pre []testutil.Request
	for _, r := range e.reg.Requests() {
		if r.IsRange() && !strings.Contains(r.Range, ",") {
			var first, last int64
			if _, err := fmtSscanf(r.Range, &first, &last); err == nil && last < end {
				pre = append(pre, r)
			}
		}
	}
	if len(pre) != 1 {
		t.Fatalf("prefetch made %d range requests inside [0, %d), want 1: %+v", len(pre), end, pre)
	}
	e.reg.Reset()
	if got := readFile(t, l, "bin/big"); !bytes.Equal(got, bigData()) {
		t.Fatal("bin/big: wrong content")
	}
	if n := e.reg.Count(isRangeReq); n != 0 {
		t.Errorf("reading a prefetched file made %d range requests, want 0", n)
	}
}

func TestBackgroundFetchSurvivesRegistryOutage(t *testing.T) {
	e := cachedEnv(t, t.TempDir(), func(o *Options) { o.Retries = -1 })
	ref, layer, files := prefetchImage(t, e)
	l, err := e.m.Layer(t.Context(), ref, layer.Desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.pre.fetched:
	case <-t.Context().Done():
		t.Fatal(t.Context().Err())
	}
	e.reg.Inject(testutil.Fault{Status: http.StatusServiceUnavailable})
	e.reg.Reset()
	readAll(t, l, files)
	if n := e.reg.Count(isRangeReq); n != 0 {
		t.Errorf("%d range requests after the background fetch, want 0", n)
	}
}

func TestEvictionKeepsPinnedPrefetchData(t *testing.T) {
	root := t.TempDir()
	// Room for the prefetched file, the TOC and a little of the rest.
	cache := openCache(t, root, 60000)
	e := newEnv(t, envOptions{opts: func(o *Options) { o.Cache = cache; o.BackgroundShare = 1 }})
	ref, layer, files := prefetchImage(t, e)
	l, err := e.m.Layer(t.Context(), ref, layer.Desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	<-l.pre.fetched
	for _, f := range files {
		if f.Name == "bin/other" { // reading it evicts what it can
			readFile(t, l, f.Name)
		}
	}
	l.wg.Wait() // cache writes of the reads
	l.pre.mu.Lock()
	pins, pinned := slices.Clone(l.pre.pins), l.pre.pinned
	l.pre.mu.Unlock()
	if len(pins) == 0 {
		t.Fatal("no prefetched chunk pinned")
	}
	used, max := cache.Usage()
	// The prefetched file is 2/3 of the cache: only its head is pinned.
	if pinned > max/2 {
		t.Errorf("prefetch pinned %d bytes, more than half the cache's %d", pinned, max)
	}
	for _, dg := range pins {
		if !cache.Has(cachedir.Content(dg)) {
			t.Errorf("pinned prefetched chunk %s was evicted", dg)
		}
	}
	if used > max {
		t.Errorf("cache holds %d bytes, more than its %d", used, max)
	}
}

// fmtSscanf parses "bytes=<first>-<last>".
func fmtSscanf(rng string, first, last *int64) (int, error) {
	return fmt.Sscanf(rng, "bytes=%d-%d", first, last)
}

func TestPlanPiecesMergesCloseRanges(t *testing.T) {
	e := &index.Entry{Chunks: []index.Chunk{
		{CompressedOffset: 100, CompressedEnd: 200},
		{CompressedOffset: 0, CompressedEnd: 100},
		{CompressedOffset: 0, CompressedEnd: 100}, // same member, packed
		{CompressedOffset: 250, CompressedEnd: 300},
		{CompressedOffset: 1000, CompressedEnd: 1100},
	}}
	var refs []chunkRef
	for i := range e.Chunks {
		refs = append(refs, chunkRef{e, i})
	}
	pieces := planPieces(refs, 50, pieceLimits{span: 1 << 20, weight: 1 << 20})
	if len(pieces) != 1 {
		t.Fatalf("planPieces() = %d pieces, want 1", len(pieces))
	}
	want := []remote.Span{{Off: 0, End: 300}, {Off: 1000, End: 1100}}
	if got := pieces[0].spans; !slices.Equal(got, want) {
		t.Errorf("planPieces() spans = %v, want %v", got, want)
	}
	if pieces[0].refs[0] != refs[0] || len(pieces[0].refs) != len(refs) {
		t.Errorf("planPieces() refs = %v, want all, %v first", pieces[0].refs, refs[0])
	}
}
