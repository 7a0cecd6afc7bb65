// SPDX-License-Identifier: Apache-2.0

package estargz_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"log"

	"github.com/stargz-store/stargz-store/store/estargz"
)

// ExampleOpen opens an eStargz blob and reads one file the way a lazy
// store does: locate the chunk holding an offset, fetch its compressed
// range, decode and verify it.
func ExampleOpen() {
	// A layer with one file, converted to eStargz in memory.
	var tarBuf bytes.Buffer
	tw := tar.NewWriter(&tarBuf)
	content := []byte("hello from a lazily pulled layer\n")
	_ = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/motd", Mode: 0o644, Size: int64(len(content))})
	_, _ = tw.Write(content)
	_ = tw.Close()
	var blob bytes.Buffer
	res, err := estargz.Build(context.Background(), &blob, bytes.NewReader(tarBuf.Bytes()), int64(tarBuf.Len()), estargz.BuildOptions{})
	if err != nil {
		log.Fatal(err)
	}

	// The TOC digest comes from the layer descriptor's annotation.
	b, err := estargz.Open(context.Background(), bytes.NewReader(blob.Bytes()), int64(blob.Len()), estargz.OpenOptions{TOCDigest: res.TOCDigest})
	if err != nil {
		log.Fatal(err)
	}
	e, _ := b.Index.Lookup("/etc/motd")
	c, _ := e.ChunkAt(6)
	compressed := blob.Bytes()[c.CompressedOffset:c.CompressedEnd] // a range request in real life
	chunk := make([]byte, c.Size)
	if err := estargz.DecodeChunk(chunk, compressed, c); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s %v %d bytes: %q\n", e.Name, e.Type, e.Size, chunk[6-c.Offset:])
	fmt.Println("no prefetch:", b.NoPrefetch)
	// Output:
	// etc/motd reg 33 bytes: "from a lazily pulled layer\n"
	// no prefetch: true
}
