// SPDX-License-Identifier: Apache-2.0

package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/store/index"
	"github.com/stargz-store/stargz-store/store/remote"
)

// rangeBlob is a blob in memory that answers several ranges at once and
// reports the bytes of each as they are copied, fillStep at a time, as a
// registry's answer arrives (store/remote reports every 64 KiB): fetches
// decode on the way as they do over HTTP.
type rangeBlob struct{ b []byte }

// fillStep is how many bytes a rangeBlob copies between two reports.
const fillStep = 64 << 10

func (r *rangeBlob) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	return bytes.NewReader(r.b).ReadAt(p, off)
}

func (r *rangeBlob) readRanges(_ context.Context, spans []remote.Span, bufs [][]byte, _ fetchKind, fill remote.Fill) error {
	for i, s := range spans {
		for n := int64(0); n < s.Len(); {
			n += int64(copy(bufs[i][n:min(n+fillStep, s.Len())], r.b[s.Off+n:s.End]))
			fill.Done(i, n)
		}
	}
	return nil
}

// textData returns n bytes of text-like data that compresses about 3:1,
// as binaries and libraries do.
func textData(seed uint64, n int) []byte {
	words := []string{"alpha ", "beta ", "gamma ", "delta ", "epsilon\n", "zeta ", "eta ", "theta\t", "iota ", "kappa "}
	r := rand.New(rand.NewPCG(seed, 1))
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[r.IntN(len(words))])
		fmt.Fprintf(&b, "%x", r.Uint32())
	}
	return b.Bytes()[:n]
}

// benchColdLayer opens a layer without a cache over a rangeBlob: its
// chunks live in the layer's map, which forget clears between rounds.
func benchColdLayer(b *testing.B, files []testutil.File, o testutil.ESGZOptions) *Layer {
	b.Helper()
	tl := testutil.ESGZLayer(b, testutil.Tar(b, files...), o)
	desc := LayerDesc{Digest: tl.Desc.Digest, Size: tl.Desc.Size, TOCDigest: tl.TOCDigest}
	l, err := OpenLayer(b.Context(), &rangeBlob{b: tl.Blob}, desc, LayerOptions{ReadAhead: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

// forget drops the chunks a layer without a cache holds.
func (l *Layer) forget() {
	l.wg.Wait()
	l.held.clear()
	l.ahead.mu.Lock()
	clear(l.ahead.seq)
	l.ahead.mu.Unlock()
}

// readKernel reads e as the kernel does, 128 KiB at a time.
func readKernel(ctx context.Context, l *Layer, e *index.Entry) error {
	p := make([]byte, 128<<10)
	for off := int64(0); off < e.Size; off += int64(len(p)) {
		if _, err := l.ReadAt(ctx, e, p, off); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	return nil
}

// BenchmarkColdRead reads an 8 MiB file (1 MiB chunks) that nothing has
// fetched yet: each read fetches its chunk with the read-ahead behind it.
func BenchmarkColdRead(b *testing.B) {
	data := textData(1, 8<<20)
	l := benchColdLayer(b, []testutil.File{{Name: "f", Data: string(data)}}, testutil.ESGZOptions{ChunkSize: 1 << 20})
	e, _ := l.Index().Lookup("f")
	b.SetBytes(e.Size)
	for b.Loop() {
		l.forget()
		if err := readKernel(b.Context(), l, e); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkColdSmallFiles reads 200 files of 4 KiB that nothing has
// fetched yet, one fetch each.
func BenchmarkColdSmallFiles(b *testing.B) {
	var files []testutil.File
	for i := range 10 {
		files = append(files, testutil.File{Name: fmt.Sprintf("d%d/", i)})
	}
	for i := range 200 {
		files = append(files, testutil.File{Name: fmt.Sprintf("d%d/f%d", i/20, i), Data: string(textData(uint64(i), 4096))})
	}
	l := benchColdLayer(b, files, testutil.ESGZOptions{})
	var es []*index.Entry
	for _, f := range files[10:] {
		e, _ := l.Index().Lookup(f.Name)
		es = append(es, e)
	}
	b.SetBytes(int64(len(files)) * 4096)
	for b.Loop() {
		l.forget()
		for _, e := range es {
			if err := readKernel(b.Context(), l, e); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkPrefetch prefetches 12 MiB of prioritized files (about 4.5 MB
// compressed, in 4 MiB chunks), as a layer's first lookup does.
func BenchmarkPrefetch(b *testing.B) {
	files := []testutil.File{{Name: "usr/"}, {Name: "usr/lib/"}}
	var names []string
	for i := range 12 {
		name := fmt.Sprintf("usr/lib/lib%d.so", i)
		files = append(files, testutil.File{Name: name, Data: string(textData(uint64(i), 1<<20))})
		names = append(names, name)
	}
	l := benchColdLayer(b, files, testutil.ESGZOptions{Prioritized: names})
	if l.PrefetchEnd() <= 0 {
		b.Fatal("no prefetch landmark")
	}
	b.SetBytes(12 << 20)
	for b.Loop() {
		l.forget()
		if err := l.prefetch(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}
