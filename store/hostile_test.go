// SPDX-License-Identifier: Apache-2.0

package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/store/zstdchunked"
)

// hostileFiles is the tree of the hostile layers: a small file, a file of
// two chunks, and a root landmark after them.
func hostileFiles(t *testing.T) []byte {
	return testutil.Tar(t, testutil.File{Name: "a", Data: "hello"}, testutil.File{Name: "b", Data: string(bytes.Repeat([]byte("b"), 10000))})
}

// openHostileESGZ opens, through OpenLayer, an eStargz layer of
// hostileFiles whose TOC edit rewrites.
func openHostileESGZ(t *testing.T, log *slog.Logger, edit func(*testutil.TOC) error) (*Layer, error) {
	t.Helper()
	tl := testutil.ESGZLayer(t, hostileFiles(t), testutil.ESGZOptions{ChunkSize: 8192, Prioritized: []string{"a"}})
	blob, toc, err := testutil.RewriteESGZ(tl.Blob, edit)
	if err != nil {
		t.Fatal(err)
	}
	desc := LayerDesc{Digest: digest.FromBytes(blob), Size: int64(len(blob)), TOCDigest: toc, Format: FormatEStargz}
	return OpenLayer(t.Context(), &countingBlob{b: blob}, desc, LayerOptions{Logger: log})
}

// setField returns an edit that sets key on the entry named name.
func setField(name, key string, v any) func(*testutil.TOC) error {
	return func(toc *testutil.TOC) error {
		e := toc.Find(name, "")
		if e == nil {
			return fmt.Errorf("no entry %q", name)
		}
		e[key] = v
		return nil
	}
}

// TestOpenLayerHostileRefused checks that a layer whose TOC breaks a cap
// is refused as not lazy (storage then pulls it normally), for both
// formats.
func TestOpenLayerHostileRefused(t *testing.T) {
	for name, edit := range map[string]func(*testutil.TOC) error{
		"huge chunk":    setField("b", "chunkSize", testutil.Num(1<<40)),
		"huge file":     setField("a", "size", testutil.Num(1<<40)),
		"uid 2^32":      setField("a", "uid", testutil.Num(1<<32)),
		"offset beyond": setField("b", "offset", testutil.Num(1<<40)),
	} {
		t.Run("estargz/"+name, func(t *testing.T) {
			if _, err := openHostileESGZ(t, nil, edit); !errors.Is(err, ErrNotLazy) {
				t.Fatalf("OpenLayer() error = %v, want ErrNotLazy", err)
			}
		})
	}
	for name, edit := range map[string]func(*testutil.TOC) error{
		"end offset past the blob": setField("b", "endOffset", testutil.Num(1<<40)),
		"end offset before offset": setField("b", "endOffset", testutil.Num(1)),
		"huge file":                setField("a", "size", testutil.Num(1<<40)),
		"gid 2^32":                 setField("a", "gid", testutil.Num(1<<32)),
	} {
		t.Run("zstd/"+name, func(t *testing.T) {
			var out bytes.Buffer
			res, err := zstdchunked.Build(t.Context(), &out, bytes.NewReader(hostileFiles(t)), zstdchunked.BuildOptions{})
			if err != nil {
				t.Fatal(err)
			}
			blob, ann, err := testutil.RewriteZstd(out.Bytes(), res.Annotations, edit)
			if err != nil {
				t.Fatal(err)
			}
			desc := LayerDesc{Digest: digest.FromBytes(blob), Size: int64(len(blob)), Format: FormatZstdChunked,
				TOCDigest: digest.Digest(ann[zstdchunked.ManifestChecksumAnnotation]), Annotations: ann, UncompressedSize: 1}
			if _, err := OpenLayer(t.Context(), &countingBlob{b: blob}, desc, LayerOptions{}); !errors.Is(err, ErrNotLazy) {
				t.Fatalf("OpenLayer() error = %v, want ErrNotLazy", err)
			}
		})
	}
}

// TestOpenLayerBadLandmark checks that a landmark beyond the data region
// leaves the layer lazy, without prefetch, and says so at warn level.
func TestOpenLayerBadLandmark(t *testing.T) {
	log, logs := testutil.NewLogger()
	// An empty landmark: one with content would be a chunk, and a chunk
	// beyond the data makes the whole layer refused.
	l, err := openHostileESGZ(t, log, func(toc *testutil.TOC) error { return testutil.EmptyLandmarkAt(toc, 1<<50) })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.PrefetchEnd() != 0 {
		t.Errorf("PrefetchEnd() = %d, want 0", l.PrefetchEnd())
	}
	if len(logs.Find(slog.LevelWarn, "prefetch landmark ignored")) != 1 {
		t.Errorf("no warning about the landmark; logs: %+v", logs.Records())
	}
	if e, ok := l.Index().Lookup("b"); !ok || e.Size != 10000 {
		t.Fatalf("Lookup(b) = %+v, %v", e, ok)
	}
	good, err := openHostileESGZ(t, nil, func(*testutil.TOC) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	if good.PrefetchEnd() <= 0 {
		t.Errorf("the unedited layer has PrefetchEnd() = %d, want its landmark", good.PrefetchEnd())
	}
}

// TestOpenLayerParseCancelled checks that the ctx OpenLayer gets (the
// resolve timeout) bounds the parse too, not only the blob reads: a
// context done before the parse stops the open with its error.
func TestOpenLayerParseCancelled(t *testing.T) {
	tl := testutil.ESGZLayer(t, hostileFiles(t), testutil.ESGZOptions{})
	ctx, cancel := context.WithCancel(t.Context())
	// The blob answers, then the deadline passes, as if the TOC had come
	// just in time and the parse took the rest.
	blob := &cancellingBlob{b: tl.Blob, cancel: cancel}
	desc := LayerDesc{Digest: tl.Desc.Digest, Size: tl.Desc.Size, TOCDigest: tl.TOCDigest}
	if _, err := OpenLayer(ctx, blob, desc, LayerOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("OpenLayer() error = %v, want context.Canceled", err)
	}
}

// cancellingBlob serves reads from memory and cancels a context after
// each one.
type cancellingBlob struct {
	b      []byte
	cancel context.CancelFunc
}

func (c *cancellingBlob) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	defer c.cancel()
	return bytes.NewReader(c.b).ReadAt(p, off)
}
