// SPDX-License-Identifier: Apache-2.0

package zstdchunked

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store/index"
)

// maxWindow bounds the window a frame may ask the decoder to keep. Podman
// and klauspost's encoder use 8 MiB at most; the zstd CLI up to 128 MiB
// only with --long or --ultra.
const maxWindow = 64 << 20

// decoder is the one zstd decoder of the package. Creating one is costly
// and DecodeAll is safe for concurrent use, so every TOC and chunk goes
// through it. DecodeAll with a cap limit never writes past cap(dst): a
// frame that inflates to more than the caller expects fails instead of
// growing the buffer, which is what stops a decompression bomb. Used
// without a reader, the decoder starts no goroutines.
var decoder = sync.OnceValue(func() *zstd.Decoder {
	d, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0), // GOMAXPROCS concurrent DecodeAll calls
		zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(1<<40),
		zstd.WithDecoderMaxWindow(maxWindow),
	)
	if err != nil {
		panic(fmt.Sprintf("zstdchunked: new decoder: %v", err)) // only with invalid options
	}
	return d
})

// DecodeChunk decompresses chunk c into dst and verifies it.
//
// compressed holds the blob bytes [c.CompressedOffset, c.CompressedEnd):
// the chunk's zstd frames. dst must be exactly c.Size bytes. DecodeChunk
// decompresses every frame, which must yield exactly c.Size bytes, and
// checks them against c.Digest. A Zero chunk is filled with zeros and
// compressed is ignored.
//
// Errors name the chunk's file offset and wrap ErrVerify when the bytes do
// not decompress or do not match the digest. On error, dst holds
// unspecified bytes that must not be served. DecodeChunk is safe for
// concurrent use.
func DecodeChunk(dst, compressed []byte, c index.Chunk) error {
	if c.Size <= 0 || int64(len(dst)) != c.Size {
		return fmt.Errorf("decode chunk at %d: buffer of %d bytes for a %d-byte chunk", c.Offset, len(dst), c.Size)
	}
	if c.Zero {
		clear(dst)
		return nil
	}
	out, err := decoder().DecodeAll(compressed, dst[:0])
	if err != nil {
		return fmt.Errorf("decode chunk at %d (blob offset %d): %w: %w", c.Offset, c.CompressedOffset, ErrVerify, err)
	}
	if len(out) != len(dst) {
		return fmt.Errorf("decode chunk at %d (blob offset %d): %w: %d bytes, want %d", c.Offset, c.CompressedOffset, ErrVerify, len(out), len(dst))
	}
	if &out[0] != &dst[0] {
		copy(dst, out) // the cap limit makes this unreachable; keep dst the result regardless
	}
	if !verify(dst, c.Digest) {
		return fmt.Errorf("decode chunk at %d (blob offset %d): %w: want %s", c.Offset, c.CompressedOffset, ErrVerify, c.Digest)
	}
	return nil
}

// verify reports whether b has digest d, without allocating for sha256.
func verify(b []byte, d digest.Digest) bool {
	if d.Algorithm() != digest.SHA256 {
		return d.Algorithm().Available() && d.Algorithm().FromBytes(b) == d
	}
	sum := sha256.Sum256(b)
	var hx [2 * sha256.Size]byte
	hex.Encode(hx[:], sum[:])
	return d.Encoded() == string(hx[:])
}
