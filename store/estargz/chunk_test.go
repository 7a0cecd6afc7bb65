// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store/index"
)

// rdPacked is one gzip member holding "head" + payload + "tail", followed
// by a second member, as small-file packing lays out a blob.
func rdPacked(t testing.TB, head, payload, tail string) ([]byte, index.Chunk) {
	var w rdBlobWriter
	w.member(t, []byte(head+payload+tail))
	end := int64(w.buf.Len())
	w.member(t, []byte("next member"))
	return w.buf.Bytes(), index.Chunk{
		Offset: 4096, Size: int64(len(payload)), CompressedEnd: end,
		InnerOffset: int64(len(head)), Digest: digest.FromString(payload),
	}
}

func TestDecodeChunk(t *testing.T) {
	payload := strings.Repeat("payload ", 1000)
	blob, c := rdPacked(t, strings.Repeat("h", 20000), payload, "tail")
	short := c
	short.Size = int64(len(payload)) + 4 + 1 // one byte past the member's end
	short.Digest = digest.FromString(payload + "tail\x00")
	tests := []struct {
		name       string
		dst        []byte
		compressed []byte
		c          index.Chunk
		want       string
		wantErr    error
	}{
		{"packed", make([]byte, len(payload)), blob, c, payload, nil},
		{"packed, member only", make([]byte, len(payload)), blob[:c.CompressedEnd], c, payload, nil},
		{"unpacked", make([]byte, 5), rdGzip(t, []byte("hello")), index.Chunk{Size: 5, CompressedEnd: 100, Digest: digest.FromString("hello")}, "hello", nil},
		{"zero", bytes.Repeat([]byte{1}, 7), nil, index.Chunk{Size: 7, Zero: true}, "\x00\x00\x00\x00\x00\x00\x00", nil},
		{"digest mismatch", make([]byte, len(payload)), blob, index.Chunk{Offset: 4096, Size: c.Size, InnerOffset: c.InnerOffset, Digest: digest.FromString("x")}, "", ErrVerify},
		{"inner offset off by one", make([]byte, len(payload)), blob, index.Chunk{Offset: 4096, Size: c.Size, InnerOffset: c.InnerOffset + 1, Digest: c.Digest}, "", ErrVerify},
		{"does not run into the next member", make([]byte, short.Size), blob, short, "", ErrVerify},
		{"inner offset past the member", make([]byte, 10), blob, index.Chunk{Size: 10, InnerOffset: 1 << 20, Digest: c.Digest}, "", ErrVerify},
		{"truncated", make([]byte, len(payload)), blob[:c.CompressedEnd/2], c, "", ErrVerify},
		{"not gzip", make([]byte, 3), []byte("not gzip at all"), index.Chunk{Size: 3, Digest: c.Digest}, "", ErrVerify},
		{"empty input", make([]byte, 3), nil, index.Chunk{Size: 3, Digest: c.Digest}, "", ErrVerify},
		{"wrong buffer size", make([]byte, 4), blob, c, "", nil},
		{"zero size", nil, blob, index.Chunk{Digest: c.Digest, InnerOffset: 5}, "", nil},
		{"unknown algorithm", make([]byte, 5), rdGzip(t, []byte("hello")), index.Chunk{Size: 5, Digest: "md5:5d41402abc4b2a76b9719d911017c592"}, "", ErrVerify},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := DecodeChunk(tt.dst, tt.compressed, tt.c)
			if tt.want != "" {
				if err != nil || string(tt.dst) != tt.want {
					t.Fatalf("DecodeChunk() = %v, dst %.40q, want %.40q", err, tt.dst, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatal("DecodeChunk() succeeded, want an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("DecodeChunk() error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && errors.Is(err, ErrVerify) {
				t.Fatalf("DecodeChunk() error = %v, want a decoding error", err)
			}
			if !strings.Contains(err.Error(), fmt.Sprint("chunk at ", tt.c.Offset)) {
				t.Errorf("error %q does not name the file offset %d", err, tt.c.Offset)
			}
		})
	}
}

func TestDecodeChunkConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for i := range 8 {
		payload := strings.Repeat(fmt.Sprint(i), 10000+i)
		blob, c := rdPacked(t, strings.Repeat("h", i*1000), payload, "")
		wg.Go(func() {
			dst := make([]byte, c.Size)
			for range 50 {
				if err := DecodeChunk(dst, blob, c); err != nil || string(dst) != payload {
					t.Errorf("DecodeChunk() = %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestDecodeChunkAllocs(t *testing.T) {
	if testing.Short() || rdRace {
		t.Skip("allocation counts need a full, non-race run")
	}
	blob, c := rdPacked(t, "head", strings.Repeat("x", 100<<10), "")
	dst := make([]byte, c.Size)
	_ = DecodeChunk(dst, blob, c) // warm the pool
	if allocs := testing.AllocsPerRun(20, func() { _ = DecodeChunk(dst, blob, c) }); allocs > 0 {
		t.Errorf("DecodeChunk allocates %v times per call, want 0", allocs)
	}
}
