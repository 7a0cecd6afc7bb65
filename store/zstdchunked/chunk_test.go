// SPDX-License-Identifier: Apache-2.0

package zstdchunked

import (
	"bytes"
	"errors"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store/index"
)

func TestDecodeChunk(t *testing.T) {
	data := bytes.Repeat([]byte("chunk data "), 1000)
	frame := compress(data)
	good := index.Chunk{Size: int64(len(data)), CompressedEnd: int64(len(frame)), Digest: digest.FromBytes(data)}
	corrupt := bytes.Clone(frame)
	corrupt[len(corrupt)/2] ^= 0xff
	twoFrames := append(compress(data[:100]), compress(data[100:])...)
	bomb := compress(make([]byte, 64<<20))
	tests := []struct {
		name    string
		comp    []byte
		c       index.Chunk
		dstLen  int
		wantErr error
	}{
		{"good", frame, good, len(data), nil},
		{"two frames", twoFrames, good, len(data), nil},
		{"zero chunk ignores bytes", []byte("junk"), index.Chunk{Size: 10, Zero: true}, 10, nil},
		{"wrong digest", frame, index.Chunk{Size: good.Size, Digest: digest.FromString("x")}, len(data), ErrVerify},
		{"corrupt frame", corrupt, good, len(data), ErrVerify},
		{"not zstd", []byte("plain text"), good, len(data), ErrVerify},
		{"truncated", frame[:len(frame)-5], good, len(data), ErrVerify},
		{"shorter than the chunk", compress(data[:10]), good, len(data), ErrVerify},
		{"bomb", bomb, index.Chunk{Size: 100, Digest: digest.FromString("x")}, 100, ErrVerify},
		{"buffer size mismatch", frame, good, 3, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := make([]byte, tt.dstLen)
			err := DecodeChunk(dst, tt.comp, tt.c)
			if tt.dstLen != int(tt.c.Size) {
				if err == nil {
					t.Fatal("DecodeChunk with a wrong-sized buffer succeeded")
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("DecodeChunk = %v, want %v", err, tt.wantErr)
			}
			if err == nil && !tt.c.Zero && !bytes.Equal(dst, data) {
				t.Error("DecodeChunk filled dst with other bytes")
			}
		})
	}
}

func TestDecodeChunkAllocs(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 1<<16)
	frame := compress(data)
	c := index.Chunk{Size: int64(len(data)), Digest: digest.FromBytes(data)}
	dst := make([]byte, len(data))
	if err := DecodeChunk(dst, frame, c); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(20, func() { _ = DecodeChunk(dst, frame, c) }); n > 1 {
		t.Errorf("DecodeChunk allocates %v times per call, want at most 1", n)
	}
}
