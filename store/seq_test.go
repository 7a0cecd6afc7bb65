// SPDX-License-Identifier: Apache-2.0

package store

import (
	"bytes"
	"context"
	"math/rand/v2"
	"testing"

	"github.com/stargz-store/stargz-store/internal/testutil"
)

// seqFiles is a tree with bin/seq, 20 chunks of 8 KiB that do not
// compress.
func seqFiles(t *testing.T) ([]testutil.File, []byte) {
	data := make([]byte, 20*8192)
	r := rand.NewChaCha8([32]byte{2})
	_, _ = r.Read(data)
	return append(sampleFiles(t, "seq"), testutil.File{Name: "bin/seq", Data: string(data)}), data
}

// readChunks reads bin/seq of l one chunk at a time, in the order given.
func readChunks(t *testing.T, l *Layer, data []byte, order ...int) {
	t.Helper()
	ent, _ := l.Index().Lookup("bin/seq")
	for _, i := range order {
		p := make([]byte, 8192)
		if _, err := l.ReadAt(context.Background(), ent, p, int64(i)*8192); err != nil {
			t.Fatalf("ReadAt(chunk %d) = %v", i, err)
		}
		if !bytes.Equal(p, data[i*8192:(i+1)*8192]) {
			t.Fatalf("chunk %d: wrong content", i)
		}
	}
}

func blobReads(b *gateBlob) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reads
}

// TestSequentialReadFetchesAhead: reading a file chunk after chunk
// fetches a growing window of the next chunks with each request: 20
// chunks in 5 requests (1, 1+2, 1+4, 1+8, the last 2), each byte once.
func TestSequentialReadFetchesAhead(t *testing.T) {
	files, data := seqFiles(t)
	l, blob := openGated(t, files, 1) // read-ahead on, but no chunk fits its budget
	blob.reset()
	close(blob.gate)
	order := make([]int, 20)
	for i := range order {
		order[i] = i
	}
	readChunks(t, l, data, order...)
	if n := blobReads(blob); n != 5 {
		t.Errorf("a sequential read of 20 chunks made %d requests, want 5", n)
	}
	if total, twice := blob.fetched(); twice != 0 {
		t.Errorf("fetched %d bytes, %d of them twice", total, twice)
	}
}

// TestRandomReadsDoNotFetchAhead: reads that skip around a file fetch
// only the chunks they read.
func TestRandomReadsDoNotFetchAhead(t *testing.T) {
	files, data := seqFiles(t)
	l, blob := openGated(t, files, 1)
	blob.reset()
	close(blob.gate)
	readChunks(t, l, data, 5, 0, 10, 12, 3)
	if n := blobReads(blob); n != 5 {
		t.Errorf("5 scattered chunk reads made %d requests, want 5", n)
	}
	ent, _ := l.Index().Lookup("bin/seq")
	want := 0
	for _, i := range []int{5, 0, 10, 12, 3} {
		c := ent.Chunks[i]
		want += int(c.CompressedEnd - c.CompressedOffset)
	}
	if total, _ := blob.fetched(); total != want {
		t.Errorf("fetched %d bytes, want the %d of the 5 chunks read", total, want)
	}
}
