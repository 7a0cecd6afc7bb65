// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"

	refestargz "github.com/containerd/stargz-snapshotter/estargz"
	"github.com/klauspost/compress/gzip"
)

// btBenchTar returns a tar of about 64 MiB of mixed files: a few large
// ones, many small ones, half text-like and half incompressible.
func btBenchTar(b *testing.B) []byte {
	b.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	var ents []btEntry
	total := 0
	add := func(name string, n int) {
		data := make([]byte, n)
		if len(ents)%2 == 0 {
			for i := range data {
				data[i] = byte(r.Uint32()) // incompressible
			}
		} else {
			copy(data, btRandBytes(uint64(len(ents)), n)) // text-like
		}
		ents = append(ents, btRegEnt(name, data))
		total += n
	}
	ents = append(ents, btDirEnt("big"), btDirEnt("small"))
	for i := range 4 {
		add(fmt.Sprintf("big/%d", i), 9<<20+i*4096)
	}
	for i := 0; total < 64<<20; i++ {
		if i%100 == 0 {
			ents = append(ents, btDirEnt(fmt.Sprintf("small/%d", i/100)))
		}
		add(fmt.Sprintf("small/%d/%d", i/100, i), 512+r.IntN(64<<10))
	}
	return btMakeTar(b, ents)
}

// BenchmarkBuild reports Build's throughput in MB/s of input tar.
func BenchmarkBuild(b *testing.B) {
	in := btBenchTar(b)
	for _, bc := range []struct {
		name string
		opts BuildOptions
	}{
		{"default", BuildOptions{}},
		{"fastest", BuildOptions{CompressionLevel: 1}},
		{"packed", BuildOptions{MinChunkSize: 64 << 10}},
		{"prioritized", BuildOptions{PrioritizedFiles: []string{"small/3/350", "big/2"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(in)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Build(context.Background(), io.Discard, bytes.NewReader(in), int64(len(in)), bc.opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBuildReference is the reference library's Build on the same
// input at the same (default) gzip level, for comparison.
func BenchmarkBuildReference(b *testing.B) {
	in := btBenchTar(b)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		blob, err := refestargz.Build(io.NewSectionReader(bytes.NewReader(in), 0, int64(len(in))),
			refestargz.WithCompressionLevel(gzip.DefaultCompression))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, blob); err != nil {
			b.Fatal(err)
		}
		blob.Close()
	}
}
