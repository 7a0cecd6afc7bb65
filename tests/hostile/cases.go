// SPDX-License-Identifier: Apache-2.0

package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/store/estargz"
	"github.com/stargz-store/stargz-store/store/index"
	"github.com/stargz-store/stargz-store/store/zstdchunked"
)

// allCases makes every case, in the order cases.json lists them.
var allCases = []func() (testCase, layer, error){
	esgzHugeChunk, esgzUID, esgzManyEntries, esgzLinkChain, esgzFarLandmark,
	esgzBigPrefetch, esgzHugeSpan, zstdEndOffset, zstdUID, zstdHugeChunk,
}

const (
	hello     = "hostile/hello.txt"
	helloData = "hello from a hostile image\n"
	// chainLinks is the length of the hard-link chain: 70 s of CPU when
	// each link was walked to its end.
	chainLinks = 40000
	// bigFiles of 4 MiB of random data make the prioritized region of
	// the big-prefetch case, and the span of the huge-span one: well
	// over index.MaxCompressedChunk.
	bigFiles = 32
)

func sha(s []byte) string { h := sha256.Sum256(s); return hex.EncodeToString(h[:]) }

// entry is one file of a layer's tar.
type entry struct {
	name, link string
	typ        byte
	data       []byte
}

func smallTree() []entry {
	return []entry{{name: "hostile/", typ: tar.TypeDir}, {name: hello, typ: tar.TypeReg, data: []byte(helloData)}}
}

func tarOf(entries []entry) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		mode := int64(0o644)
		if e.typ == tar.TypeDir {
			mode = 0o755
		}
		h := &tar.Header{Typeflag: e.typ, Name: e.name, Linkname: e.link, Mode: mode, Size: int64(len(e.data)), Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	err := tw.Close()
	return b.Bytes(), err
}

// esgzLayer builds an eStargz layer of entries, prioritizing the given
// files, and rewrites its TOC with edit (nil keeps it).
func esgzLayer(entries []entry, prioritized []string, edit func(*testutil.TOC) error) (layer, error) {
	in, err := tarOf(entries)
	if err != nil {
		return layer{}, err
	}
	var out bytes.Buffer
	res, err := estargz.Build(context.Background(), &out, bytes.NewReader(in), int64(len(in)), estargz.BuildOptions{PrioritizedFiles: prioritized})
	if err != nil {
		return layer{}, err
	}
	return esgzDescribe(out.Bytes(), res.TOCDigest, edit)
}

// esgzDescribe rewrites blob's TOC with edit (nil keeps it) and returns
// the layer with its DiffID and annotations.
func esgzDescribe(blob []byte, toc digest.Digest, edit func(*testutil.TOC) error) (layer, error) {
	if edit != nil {
		var err error
		if blob, toc, err = testutil.RewriteESGZ(blob, edit); err != nil {
			return layer{}, err
		}
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		return layer{}, err
	}
	h := digest.SHA256.Digester()
	n, err := io.Copy(h.Hash(), zr)
	if err != nil {
		return layer{}, fmt.Errorf("gunzip: %w", err)
	}
	return layer{blob: blob, diffID: h.Digest(), mediaType: ocispec.MediaTypeImageLayerGzip, annotations: map[string]string{
		testutil.AnnotationTOCDigest:        toc.String(),
		testutil.AnnotationUncompressedSize: strconv.FormatInt(n, 10),
	}}, nil
}

// zstdLayer builds a zstd:chunked layer of entries and rewrites its TOC
// with edit.
func zstdLayer(entries []entry, edit func(*testutil.TOC) error) (layer, error) {
	in, err := tarOf(entries)
	if err != nil {
		return layer{}, err
	}
	var out bytes.Buffer
	res, err := zstdchunked.Build(context.Background(), &out, bytes.NewReader(in), zstdchunked.BuildOptions{})
	if err != nil {
		return layer{}, err
	}
	blob, ann, err := testutil.RewriteZstd(out.Bytes(), res.Annotations, edit)
	if err != nil {
		return layer{}, err
	}
	return layer{blob: blob, diffID: res.DiffID, mediaType: zstdchunked.MediaType, annotations: ann}, nil
}

// set returns an edit that sets fields (key, value pairs) of file name.
func set(name string, kv ...any) func(*testutil.TOC) error {
	return func(toc *testutil.TOC) error {
		e := toc.Find(name, "")
		if e == nil {
			return fmt.Errorf("no TOC entry %q", name)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			e[kv[i].(string)] = kv[i+1]
		}
		return nil
	}
}

func refused(name, format, why string) testCase {
	return testCase{Name: name, Format: format, Expect: "refused", File: hello, SHA256: sha([]byte(helloData)), Why: why}
}

func esgzHugeChunk() (testCase, layer, error) {
	tc := refused("esgz-huge-chunk", "estargz", "a 27-byte file declares a 1 TiB size and chunk")
	l, err := esgzLayer(smallTree(), nil, set(hello, "size", testutil.Num(1<<40), "chunkSize", testutil.Num(1<<40)))
	return tc, l, err
}

func esgzUID() (testCase, layer, error) {
	tc := refused("esgz-uid", "estargz", "uid 2^32, which a mount shows as 0")
	l, err := esgzLayer(smallTree(), nil, set(hello, "uid", testutil.Num(1<<32)))
	return tc, l, err
}

// esgzManyEntries adds names so deep that their implicit directories
// pass the entry limit an index may get from the TOC's size.
func esgzManyEntries() (testCase, layer, error) {
	tc := refused("esgz-many-entries", "estargz", "3000 names, each 2000 directories deep: 6 million implicit entries")
	l, err := esgzLayer(smallTree(), nil, func(toc *testutil.TOC) error {
		deep := strings.Repeat("d/", 2000)
		for i := range 3000 {
			toc.Entries = append(toc.Entries, map[string]any{"name": fmt.Sprintf("bomb%d/%sf", i, deep), "type": "fifo"})
		}
		return nil
	})
	return tc, l, err
}

// esgzLinkChain is a valid layer: f0 and a chain of hard links to it.
// The TOC lists them in reverse, each link before the one it names, which
// made a resolver that walks each link to its end quadratic.
func esgzLinkChain() (testCase, layer, error) {
	tc := testCase{Name: "esgz-link-chain", Format: "estargz", Expect: "lazy", File: "hostile/f0",
		SHA256: sha([]byte("chain\n")), Links: chainLinks + 1, Why: fmt.Sprintf("a chain of %d hard links, listed target-last", chainLinks)}
	es := append(smallTree(), entry{name: "hostile/f0", typ: tar.TypeReg, data: []byte("chain\n")})
	for i := 1; i <= chainLinks; i++ {
		es = append(es, entry{name: fmt.Sprintf("hostile/l%d", i), link: fmt.Sprintf("hostile/l%d", i-1), typ: tar.TypeLink})
	}
	es[len(smallTree())+1].link = "hostile/f0" // l1 -> f0
	l, err := esgzLayer(es, nil, func(toc *testutil.TOC) error {
		var at []int
		for i, e := range toc.Entries {
			if e["type"] == "hardlink" {
				at = append(at, i)
			}
		}
		for i, j := 0, len(at)-1; i < j; i, j = i+1, j-1 {
			toc.Entries[at[i]], toc.Entries[at[j]] = toc.Entries[at[j]], toc.Entries[at[i]]
		}
		return nil
	})
	return tc, l, err
}

// esgzFarLandmark points an empty .prefetch.landmark far beyond the blob:
// the layer stays lazy, without prefetch.
func esgzFarLandmark() (testCase, layer, error) {
	tc := testCase{Name: "esgz-far-landmark", Format: "estargz", Expect: "lazy", File: hello, SHA256: sha([]byte(helloData)),
		Why: "an empty .prefetch.landmark at offset 2^50"}
	l, err := esgzLayer(smallTree(), []string{hello}, func(toc *testutil.TOC) error { return testutil.EmptyLandmarkAt(toc, 1<<50) })
	return tc, l, err
}

// bigBlob is the eStargz blob of the small tree plus bigFiles random
// files, all prioritized: a valid prefetch region of bigFiles*4 MiB.
var bigBlob = sync.OnceValues(func() (bigLayer, error) {
	es := append(smallTree(), entry{name: "hostile/big/", typ: tar.TypeDir})
	prio := []string{hello}
	r := rand.New(rand.NewPCG(1, 2))
	var last []byte
	for i := range bigFiles {
		data := make([]byte, 4<<20)
		for j := 0; j < len(data); j += 8 {
			v := r.Uint64()
			for k := range 8 {
				data[j+k] = byte(v >> (8 * k))
			}
		}
		name := fmt.Sprintf("hostile/big/r%02d.bin", i)
		es = append(es, entry{name: name, typ: tar.TypeReg, data: data})
		prio = append(prio, name)
		last = data
	}
	in, err := tarOf(es)
	if err != nil {
		return bigLayer{}, err
	}
	var out bytes.Buffer
	res, err := estargz.Build(context.Background(), &out, bytes.NewReader(in), int64(len(in)),
		estargz.BuildOptions{PrioritizedFiles: prio, CompressionLevel: gzip.BestSpeed})
	if err != nil {
		return bigLayer{}, err
	}
	b, err := estargz.Open(context.Background(), bytes.NewReader(out.Bytes()), int64(out.Len()), estargz.OpenOptions{TOCDigest: res.TOCDigest})
	if err != nil {
		return bigLayer{}, err
	}
	return bigLayer{blob: out.Bytes(), toc: res.TOCDigest, lastSum: sha(last), prefetchEnd: b.PrefetchEnd}, nil
})

type bigLayer struct {
	blob        []byte
	toc         digest.Digest
	lastSum     string
	prefetchEnd int64
}

func esgzBigPrefetch() (testCase, layer, error) {
	tc := testCase{Name: "esgz-big-prefetch", Format: "estargz", Expect: "lazy",
		File: fmt.Sprintf("hostile/big/r%02d.bin", bigFiles-1), Why: fmt.Sprintf("a valid prefetch region of %d MiB", bigFiles*4)}
	b, err := bigBlob()
	if err != nil {
		return tc, layer{}, err
	}
	tc.SHA256, tc.PrefetchBytes = b.lastSum, b.prefetchEnd
	l, err := esgzDescribe(b.blob, b.toc, nil)
	return tc, l, err
}

// esgzHugeSpan drops the big files from the TOC of the big blob: the
// member of hello.txt then seems to run to the landmark, a compressed
// range far over index.MaxCompressedChunk.
func esgzHugeSpan() (testCase, layer, error) {
	tc := refused("esgz-huge-span", "estargz", fmt.Sprintf("a 27-byte file whose compressed range is %d MiB (limit %d MiB)", bigFiles*4, index.MaxCompressedChunk>>20))
	b, err := bigBlob()
	if err != nil {
		return tc, layer{}, err
	}
	l, err := esgzDescribe(b.blob, b.toc, func(toc *testutil.TOC) error {
		kept := toc.Entries[:0]
		for _, e := range toc.Entries {
			if n, _ := e["name"].(string); !strings.Contains(n, "hostile/big/r") {
				kept = append(kept, e)
			}
		}
		toc.Entries = kept
		return nil
	})
	return tc, l, err
}

func zstdEndOffset() (testCase, layer, error) {
	tc := refused("zstd-end-offset", "zstd:chunked", "endOffset 2^40, far past the blob")
	l, err := zstdLayer(smallTree(), set(hello, "endOffset", testutil.Num(1<<40)))
	return tc, l, err
}

func zstdUID() (testCase, layer, error) {
	tc := refused("zstd-uid", "zstd:chunked", "uid 2^32")
	l, err := zstdLayer(smallTree(), set(hello, "uid", testutil.Num(1<<32)))
	return tc, l, err
}

func zstdHugeChunk() (testCase, layer, error) {
	tc := refused("zstd-huge-chunk", "zstd:chunked", "a 27-byte file declares 1 TiB in one chunk")
	l, err := zstdLayer(smallTree(), set(hello, "size", testutil.Num(1<<40)))
	return tc, l, err
}
