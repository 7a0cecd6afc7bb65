// SPDX-License-Identifier: Apache-2.0

package zstdchunked

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"
)

// cancelAfter is a reader that cancels a context once n bytes were read.
type cancelAfter struct {
	r      io.Reader
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n -= n; c.n <= 0 {
		c.cancel()
	}
	return n, err
}

type failingWriter struct{ after int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.after -= len(p); w.after < 0 {
		return 0, errors.New("disk full")
	}
	return len(p), nil
}

// waitGoroutines waits until at most n goroutines run: the compressor
// runs one of its own, which Build must end on every path.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > n; {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines, want %d:\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestBuildErrors(t *testing.T) {
	tarball := makeTar(t, sampleFiles()...)
	base := runtime.NumGoroutine()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, err := Build(ctx, io.Discard, &cancelAfter{r: bytes.NewReader(tarball), n: 64 << 10, cancel: cancel}, BuildOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Build with a canceled context = %v, want context.Canceled", err)
	}
	waitGoroutines(t, base)

	if _, err := Build(context.Background(), &failingWriter{after: 4096}, bytes.NewReader(tarball), BuildOptions{}); err == nil {
		t.Error("Build to a failing writer succeeded")
	}
	waitGoroutines(t, base)

	if _, err := Build(context.Background(), io.Discard, bytes.NewReader([]byte("not a tar")), BuildOptions{}); err == nil {
		t.Error("Build of a non-tar succeeded")
	}
	waitGoroutines(t, base)
}

func TestBuildLevel(t *testing.T) {
	tarball := makeTar(t, sampleFiles()...)
	var fast, best bytes.Buffer
	rf, err := Build(context.Background(), &fast, bytes.NewReader(tarball), BuildOptions{Level: 1})
	if err != nil {
		t.Fatal(err)
	}
	rb, err := Build(context.Background(), &best, bytes.NewReader(tarball), BuildOptions{Level: 19})
	if err != nil {
		t.Fatal(err)
	}
	if rf.DiffID != rb.DiffID {
		t.Errorf("DiffID depends on the level: %s, %s", rf.DiffID, rb.DiffID)
	}
	if _, err := Open(context.Background(), bytes.NewReader(best.Bytes()), rb.Size, OpenOptions{TOCDigest: rb.TOCDigest, Annotations: rb.Annotations}); err != nil {
		t.Errorf("Open of a level-19 blob: %v", err)
	}
}

// TestDecodeChunkConcurrent decodes through the shared decoder from more
// goroutines than its concurrency, as FUSE reads do.
func TestDecodeChunkConcurrent(t *testing.T) {
	tarball := makeTar(t, sampleFiles()...)
	blob, res := buildBlob(t, tarball)
	b, err := Open(context.Background(), bytes.NewReader(blob), res.Size, OpenOptions{TOCDigest: res.TOCDigest, Annotations: res.Annotations})
	if err != nil {
		t.Fatal(err)
	}
	e, _ := b.Index.Lookup("bin/big")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := g; i < len(e.Chunks); i += 8 {
				c := e.Chunks[i]
				if err := DecodeChunk(make([]byte, c.Size), blob[c.CompressedOffset:c.CompressedEnd], c); err != nil {
					t.Errorf("chunk %d: %v", i, err)
				}
			}
		})
	}
	wg.Wait()
}
