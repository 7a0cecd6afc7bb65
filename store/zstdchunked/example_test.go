// SPDX-License-Identifier: Apache-2.0

package zstdchunked_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"log"

	"github.com/stargz-store/stargz-store/store/zstdchunked"
)

// ExampleOpen builds a zstd:chunked blob as Podman pushes it, then reads
// one file lazily: only the TOC and that file's chunks are read from the
// blob.
func ExampleOpen() {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	body := []byte("hello, zstd:chunked\n")
	_ = tw.WriteHeader(&tar.Header{Name: "etc/motd", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
	_, _ = tw.Write(body)
	_ = tw.Close()

	var blob bytes.Buffer
	res, err := zstdchunked.Build(context.Background(), &blob, &tb, zstdchunked.BuildOptions{})
	if err != nil {
		log.Fatal(err)
	}
	// A store gets the TOC digest and position from the layer descriptor.
	b, err := zstdchunked.Open(context.Background(), bytes.NewReader(blob.Bytes()), res.Size, zstdchunked.OpenOptions{
		TOCDigest:   res.TOCDigest,
		Annotations: res.Annotations,
	})
	if err != nil {
		log.Fatal(err)
	}
	e, _ := b.Index.Lookup("etc/motd")
	for _, c := range e.Chunks {
		dst := make([]byte, c.Size)
		if err := zstdchunked.DecodeChunk(dst, blob.Bytes()[c.CompressedOffset:c.CompressedEnd], c); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s", dst)
	}
	// Output: hello, zstd:chunked
}
