// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"

	"github.com/stargz-store/stargz-store/store/index"
)

// chunkReader is a reusable gunzip pipeline: a gzip reader over an
// in-memory compressed region. Resetting one costs no allocation once its
// inflate state exists, which matters because every file read decodes at
// least one chunk.
type chunkReader struct {
	br bytes.Reader
	zr gzip.Reader
}

var chunkReaders = sync.Pool{New: func() any { return new(chunkReader) }}

// DecodeChunk decompresses chunk c into dst and verifies it.
//
// compressed holds the blob bytes [c.CompressedOffset, c.CompressedEnd),
// or at least a prefix of them that covers the chunk's gzip member. dst
// must be exactly c.Size bytes. DecodeChunk gunzips one member from the
// start of compressed, skips c.InnerOffset bytes, fills dst and checks its
// digest against c.Digest. A Zero chunk is filled with zeros and
// compressed is ignored.
//
// Errors name the chunk's file offset and wrap ErrVerify when the bytes do
// not match the digest. On error, dst holds unspecified bytes that must
// not be served. DecodeChunk is safe for concurrent use.
func DecodeChunk(dst, compressed []byte, c index.Chunk) error {
	if c.Size <= 0 || int64(len(dst)) != c.Size {
		return fmt.Errorf("decode chunk at %d: buffer of %d bytes for a %d-byte chunk", c.Offset, len(dst), c.Size)
	}
	if c.Zero {
		clear(dst)
		return nil
	}
	if err := inflate(dst, compressed, c.InnerOffset); err != nil {
		// Bytes that do not even decompress fail verification as surely
		// as bytes with the wrong digest.
		return fmt.Errorf("decode chunk at %d (blob offset %d): %w: %w", c.Offset, c.CompressedOffset, ErrVerify, err)
	}
	if !verify(dst, c.Digest) {
		return fmt.Errorf("decode chunk at %d (blob offset %d): %w: want %s", c.Offset, c.CompressedOffset, ErrVerify, c.Digest)
	}
	return nil
}

// inflate gunzips one member of compressed, drops skip bytes, and fills dst.
func inflate(dst, compressed []byte, skip int64) error {
	cr := chunkReaders.Get().(*chunkReader)
	defer chunkReaders.Put(cr)
	cr.br.Reset(compressed)
	if err := cr.zr.Reset(&cr.br); err != nil {
		return fmt.Errorf("gzip header: %w", err)
	}
	cr.zr.Multistream(false)
	for skip > 0 { // dst doubles as the scratch buffer for skipped bytes
		n, err := io.ReadFull(&cr.zr, dst[:min(int64(len(dst)), skip)])
		skip -= int64(n)
		if err != nil {
			return fmt.Errorf("skip to inner offset: %w", eofIsUnexpected(err))
		}
	}
	if _, err := io.ReadFull(&cr.zr, dst); err != nil {
		return fmt.Errorf("inflate: %w", eofIsUnexpected(err))
	}
	return nil
}

func eofIsUnexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
