// SPDX-License-Identifier: Apache-2.0

package zstdchunked

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

// BenchmarkOpenLargeTOC opens a blob whose TOC lists 100k files, the
// size of a large distribution image layer.
func BenchmarkOpenLargeTOC(b *testing.B) {
	var w handBlob
	w.frame([]byte("tar header"))
	off := w.frame([]byte("x"))
	end := int64(w.buf.Len())
	d := digest.FromString("x").String()
	var entries []string
	for i := range 100_000 {
		if i%100 == 0 {
			entries = append(entries, fmt.Sprintf(`{"type":"dir","name":"usr/share/d%d/","mode":493,"modtime":"2023-11-14T22:13:20Z"}`, i/100))
		}
		entries = append(entries, fmt.Sprintf(`{"type":"reg","name":"usr/share/d%d/file-%d.txt","mode":420,"size":1,"modtime":"2023-11-14T22:13:20Z","digest":%q,"offset":%d,"endOffset":%d}`, i/100, i, d, off, end))
	}
	toc := []byte(`{"version":1,"entries":[` + strings.Join(entries, ",") + `]}`)
	blob, td, ann := w.finish(toc)
	b.SetBytes(int64(len(toc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Open(context.Background(), bytes.NewReader(blob), int64(len(blob)), OpenOptions{TOCDigest: td, Annotations: ann}); err != nil {
			b.Fatal(err)
		}
	}
}
