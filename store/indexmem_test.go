// SPDX-License-Identifier: Apache-2.0

package store

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"
)

// TestIndexBytesEstimate: the estimate of an index's memory is within
// 20 % of the heap an open layer keeps, for both formats, small and
// chunked files.
func TestIndexBytesEstimate(t *testing.T) {
	name := func(i int) string { return fmt.Sprintf("usr/share/dir%02d/some-file-name-%05d.txt", i%40, i) }
	esgz := func(size int64) func(t *testing.T) ([]byte, LayerDesc) {
		return func(t *testing.T) ([]byte, LayerDesc) {
			var files []patternFile
			for i := range 4000 {
				files = append(files, patternFile{name(i), size})
			}
			return synthLayer(t, 4<<10, nil, files...)
		}
	}
	for _, tt := range []struct {
		name  string
		build func(t *testing.T) ([]byte, LayerDesc)
	}{
		{"eStargz small files", esgz(10)},
		{"eStargz three chunks each", esgz(10 << 10)},
		{"zstd:chunked", func(t *testing.T) ([]byte, LayerDesc) {
			files := map[string][]byte{}
			var names []string
			for i := range 4000 {
				files[name(i)] = textData(uint64(i), 100)
				names = append(names, name(i))
			}
			blob, desc, _ := zstdLayer(t, files, names...)
			return blob, desc
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			blob, desc := tt.build(t)
			var ms runtime.MemStats
			heap := func() uint64 {
				runtime.GC()
				runtime.GC()
				runtime.ReadMemStats(&ms)
				return ms.HeapAlloc
			}
			before := heap()
			l, err := OpenLayer(t.Context(), &rangeBlob{b: blob}, desc, LayerOptions{})
			if err != nil {
				t.Fatal(err)
			}
			kept := float64(heap() - before)
			est := float64(indexBytes(l.Index()))
			l.Close()
			runtime.KeepAlive(l)
			t.Logf("%d entries: heap kept %.0f bytes, estimate %.0f", l.Index().Len(), kept, est)
			if est < 0.8*kept || est > 1.2*kept {
				t.Errorf("estimate %.0f bytes, heap kept %.0f: off by more than 20 %%", est, kept)
			}
		})
	}
}

// TestManagerIndexMemory: a layer whose index does not fit frees idle
// layers to make room, and is refused as not lazy when the open layers
// are used; their memory comes back when they are freed.
func TestManagerIndexMemory(t *testing.T) {
	var size int64 // of layer 0's index; the others are nearly equal
	e := newEnv(t, envOptions{opts: func(o *Options) { o.MaxIndexMemory = 1 }})
	ref, img := e.esgzImage(t, "app", "v1", 3)
	tl := img.Layers[0]
	l, err := OpenLayer(t.Context(), &rangeBlob{b: tl.Blob}, LayerDesc{Digest: tl.Desc.Digest, Size: tl.Desc.Size, TOCDigest: tl.TOCDigest}, LayerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	size = l.indexSize
	l.Close()
	// Room for one layer, not two.
	e.m.opts.MaxIndexMemory = size * 3 / 2
	used := func() int64 {
		e.m.mu.Lock()
		defer e.m.mu.Unlock()
		return e.m.indexUsed
	}

	if _, err := e.m.Layer(t.Context(), ref, img.Layers[0].Desc.Digest); err != nil {
		t.Fatal(err)
	}
	l1, err := e.m.Layer(t.Context(), ref, img.Layers[1].Desc.Digest)
	if err != nil {
		t.Fatalf("Layer(1) = %v; want layer 0, idle, freed for it", err)
	}
	if lines := e.logs.Find(slog.LevelInfo, "layer freed"); len(lines) != 1 || lines[0].Attrs["digest"] != img.Layers[0].Desc.Digest.String() {
		t.Fatalf("freed %v, want layer 0", lines)
	}
	if u := used(); u != l1.indexSize {
		t.Errorf("index memory used %d, want layer 1's %d", u, l1.indexSize)
	}

	if err := e.m.Use(ref, img.Layers[1].TOCDigest); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Layer(t.Context(), ref, img.Layers[2].Desc.Digest); !errors.Is(err, ErrNotLazy) {
		t.Fatalf("Layer(2) = %v with layer 1 in use; want ErrNotLazy", err)
	}
	if n := len(e.logs.Find(slog.LevelInfo, "layer freed")); n != 1 {
		t.Fatalf("%d layers freed, want layer 1 kept", n)
	}

	if err := e.m.Release(ref, img.Layers[1].TOCDigest); err != nil {
		t.Fatal(err)
	}
	if u := used(); u != 0 {
		t.Errorf("index memory used %d with no layer open, want 0", u)
	}
	e.clk.Advance(defaultNotLazyTTL + 1)
	if _, err := e.m.Layer(t.Context(), ref, img.Layers[2].Desc.Digest); err != nil {
		t.Fatalf("Layer(2) = %v once layer 1 was released", err)
	}
}

// TestManagerIndexMemoryRefusesTooLarge: an index larger than the whole
// bound is not lazy, and frees nothing.
func TestManagerIndexMemoryRefusesTooLarge(t *testing.T) {
	e := newEnv(t, envOptions{opts: func(o *Options) { o.MaxIndexMemory = 1000 }})
	ref, img := e.esgzImage(t, "app", "v1", 1)
	_, err := e.m.Layer(t.Context(), ref, img.Layers[0].Desc.Digest)
	if !errors.Is(err, ErrNotLazy) {
		t.Fatalf("Layer() = %v, want ErrNotLazy", err)
	}
	lines := e.logs.Find(slog.LevelWarn, "layer not served lazily")
	if len(lines) != 1 || !strings.Contains(lines[0].Attrs["err"], "index") {
		t.Errorf("warnings %v, want one naming the index", lines)
	}
}
