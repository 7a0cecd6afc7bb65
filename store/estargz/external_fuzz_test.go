// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store/index"
)

// Size limits of FuzzOpenExternal, which keep each execution (and the
// minimization of every new input, one execution per attempt) cheap: a
// TOC blob claiming DefaultMaxTOCSize made every attempt allocate it, and
// the fuzzer stalled after a few seconds.
const (
	rdFuzzMaxTOC   = 1 << 20  // OpenOptions.MaxTOCSize
	rdFuzzMaxInput = 16 << 10 // a fuzzed TOC blob or TOC JSON
)

// FuzzOpenExternal feeds OpenExternal TOCs for a real external-TOC blob.
// With wrap set, data is TOC JSON, wrapped in a well-formed TOC blob, with
// its digest: that exercises the TOC parser, whose input gzip and tar
// would otherwise hide from mutations. Otherwise data is the TOC blob
// itself (from the TOC image, untrusted), with the digest of whatever JSON
// it holds. OpenExternal must never panic, fail only with its error
// classes, and what it accepts must keep every chunk before the footer.
func FuzzOpenExternal(f *testing.F) {
	in := btMakeTar(f, btMixedEntries())
	var out bytes.Buffer
	res, err := BuildExternal(f.Context(), &out, bytes.NewReader(in), int64(len(in)), ExternalBuildOptions{})
	if err != nil {
		f.Fatal(err)
	}
	blob := out.Bytes()
	json, _, err := tocJSONFrom(f.Context(), res.TOC, rdFuzzMaxTOC, digest.SHA256)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(json), true)
	for _, seed := range rdCapSeeds(f) {
		f.Add(seed, true)
	}
	f.Add(res.TOC, false)
	f.Add([]byte{}, false)
	f.Add(res.TOC[:len(res.TOC)/2], false)
	end := int64(len(blob)) - ExternalTOCFooterSize
	f.Fuzz(func(t *testing.T, data []byte, wrap bool) {
		if len(data) > rdFuzzMaxInput {
			return
		}
		toc, d := data, res.TOCDigest
		if wrap {
			var err error
			if toc, err = tocBlob(data, gzip.BestSpeed); err != nil {
				t.Fatal(err)
			}
		}
		if json, _, err := tocJSONFrom(context.Background(), toc, rdFuzzMaxTOC, digest.SHA256); err == nil {
			d = digest.FromString(json)
		}
		b, err := OpenExternal(context.Background(), bytes.NewReader(blob), int64(len(blob)), toc, OpenOptions{TOCDigest: d, MaxTOCSize: rdFuzzMaxTOC})
		if err != nil {
			if !errors.Is(err, ErrNotEStargz) && !errors.Is(err, ErrVerify) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, index.ErrInvalid) {
				t.Fatalf("OpenExternal: unclassified error %v", err)
			}
			return
		}
		if b.TOCOffset != end || b.PrefetchEnd < 0 || b.PrefetchEnd > end {
			t.Fatalf("TOCOffset %d, PrefetchEnd %d; want %d and a prefetch end inside it", b.TOCOffset, b.PrefetchEnd, end)
		}
		rdCheckChunks(t, blob, b)
	})
}
