// SPDX-License-Identifier: Apache-2.0

package store

import (
	"bytes"
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stargz-store/stargz-store/internal/testutil"
)

// stallingBlob serves the blob but holds reads that start before stallEnd
// until ctx ends, counting them.
type stallingBlob struct {
	b        []byte
	stallEnd int64
	stalled  atomic.Int64
}

func (s *stallingBlob) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < s.stallEnd {
		s.stalled.Add(1)
		<-ctx.Done()
		return 0, ctx.Err()
	}
	return (&countingBlob{b: s.b}).ReadAt(ctx, p, off)
}

func TestPrefetchTimeoutReleasesTheLookup(t *testing.T) {
	tl := testutil.ESGZLayer(t, testutil.Tar(t, append(sampleFiles(t, "s"), testutil.File{Name: "bin/x", Data: "x"})...),
		testutil.ESGZOptions{ChunkSize: 8192, Prioritized: []string{"bin/big"}})
	synctest.Test(t, func(t *testing.T) {
		m, err := New(Options{Registries: noRegistries{}, PrefetchTimeout: 5 * time.Second, NoBackgroundFetch: true})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		blob := &stallingBlob{b: tl.Blob}
		desc := LayerDesc{Digest: tl.Desc.Digest, Size: tl.Desc.Size, TOCDigest: tl.TOCDigest}
		l, err := OpenLayer(t.Context(), blob, desc, LayerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if l.PrefetchEnd() <= 0 {
			t.Fatal("no prefetch landmark")
		}
		blob.stallEnd = l.PrefetchEnd()
		start := time.Now()
		m.prefetch(t.Context(), l, nil)
		if d := time.Since(start); d != 5*time.Second {
			t.Errorf("lookup held for %v, want the 5s prefetch timeout", d)
		}
		if n := blob.stalled.Load(); n != 1 {
			t.Errorf("%d prefetch reads, want 1", n)
		}
		select {
		case <-l.pre.prefetched:
			t.Error("prefetch ended though its read is still stalled")
		default:
		}
	})
}

func TestTOCCacheDamagedRecordFallsBackToTheBlob(t *testing.T) {
	tl := testutil.ESGZLayer(t, testutil.Tar(t, sampleFiles(t, "toc")...), testutil.ESGZOptions{ChunkSize: 8192})
	cache := openCache(t, t.TempDir(), 1<<30)
	blob := &countingBlob{b: tl.Blob}
	desc := LayerDesc{Digest: tl.Desc.Digest, Size: tl.Desc.Size, TOCDigest: tl.TOCDigest, Format: FormatEStargz}
	open := func() {
		t.Helper()
		l, err := OpenLayer(t.Context(), blob, desc, LayerOptions{Cache: cache})
		if err != nil {
			t.Fatalf("OpenLayer() = %v", err)
		}
		l.Close()
	}
	open()
	if blob.reads.Load() == 0 {
		t.Fatal("first open read nothing from the blob")
	}
	blob.reads.Store(0)
	open()
	if n := blob.reads.Load(); n != 0 {
		t.Fatalf("second open made %d blob reads, want 0 (TOC cached)", n)
	}
	// Damage every recorded byte after the magic.
	rec, err := cache.ReadAll(tocKey(desc), maxTOCRecord)
	if err != nil {
		t.Fatal(err)
	}
	segs, err := decodeSegments(rec)
	if err != nil {
		t.Fatal(err)
	}
	for i := range segs {
		segs[i].data = bytes.Repeat([]byte{0x5a}, len(segs[i].data))
	}
	if err := cache.Remove(tocKey(desc)); err != nil {
		t.Fatal(err)
	}
	if err := cache.Put(t.Context(), tocKey(desc), encodeSegments(segs)); err != nil {
		t.Fatal(err)
	}
	open()
	if blob.reads.Load() == 0 {
		t.Fatal("open with a damaged TOC record did not read the blob")
	}
	blob.reads.Store(0)
	open()
	if n := blob.reads.Load(); n != 0 {
		t.Fatalf("open after the record was rewritten made %d blob reads, want 0", n)
	}
}
