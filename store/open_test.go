// SPDX-License-Identifier: Apache-2.0

package store

import (
	"testing"

	"github.com/stargz-store/stargz-store/internal/testutil"
)

// TestSmallLayerOpensWithOneRequest: the footer and the TOC of a layer
// whose TOC fits the tail window come in one range request.
func TestSmallLayerOpensWithOneRequest(t *testing.T) {
	e := cachedEnv(t, t.TempDir(), quiet)
	ref, img := e.esgzImage(t, "app", "v1", 1)
	if _, err := e.m.Layer(t.Context(), ref, img.Layers[0].Desc.Digest); err != nil {
		t.Fatal(err)
	}
	if n := e.reg.Count(isRangeReq); n != 1 {
		t.Errorf("opening a small layer made %d range requests, want 1", n)
	}
}

// TestOpenWithoutCacheOneRead: without a cache, too, opening reads the
// blob once.
func TestOpenWithoutCacheOneRead(t *testing.T) {
	tl := testutil.ESGZLayer(t, testutil.Tar(t, sampleFiles(t, "nc")...), testutil.ESGZOptions{ChunkSize: 8192})
	blob := &countingBlob{b: tl.Blob}
	desc := LayerDesc{Digest: tl.Desc.Digest, Size: tl.Desc.Size, TOCDigest: tl.TOCDigest}
	l, err := OpenLayer(t.Context(), blob, desc, LayerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if n := blob.reads.Load(); n != 1 {
		t.Errorf("OpenLayer() made %d blob reads, want 1", n)
	}
}

// TestTOCBeforeTailWindow: a TOC that starts before the tail window costs
// a second request for the missing head only, and the cached record
// serves the next open once the first layer is closed.
func TestTOCBeforeTailWindow(t *testing.T) {
	oldMin, oldMax := tailWindowMin, tailWindowMax
	tailWindowMin, tailWindowMax = 128, 128
	defer func() { tailWindowMin, tailWindowMax = oldMin, oldMax }()
	l, blob := openGated(t, sampleFiles(t, "big-toc"), 0)
	if reads := blob.readCount(); reads != 2 {
		t.Errorf("opening made %d reads, want 2 (tail window, then the TOC's head)", blob.readCount())
	}
	total, twice := blob.fetched()
	if twice != 0 {
		t.Errorf("opening fetched %d bytes, %d of them twice", total, twice)
	}
	blob.reset()
	close(blob.gate)
	desc := l.Desc()
	l.Close() // the TOC record is written off the open's path, by the layer's Close at the latest
	l2, err := OpenLayer(t.Context(), blob, desc, LayerOptions{Cache: l.cache})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if total, _ := blob.fetched(); total != 0 {
		t.Errorf("reopening fetched %d bytes, want 0 (TOC record cached)", total)
	}
}
