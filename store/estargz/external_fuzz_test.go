// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"bytes"
	"context"
	"errors"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store/index"
)

// FuzzOpenExternal feeds OpenExternal a fuzzed TOC blob (from the TOC image, untrusted until
// its JSON digest matches) for a real external-TOC blob. With the digest of whatever JSON the
// blob holds, the parser is reached; OpenExternal must never panic, fail only with its error
// classes, and what it accepts must keep every chunk before the footer.
func FuzzOpenExternal(f *testing.F) {
	in := btMakeTar(f, btMixedEntries())
	var out bytes.Buffer
	res, err := BuildExternal(f.Context(), &out, bytes.NewReader(in), int64(len(in)), ExternalBuildOptions{})
	if err != nil {
		f.Fatal(err)
	}
	blob := out.Bytes()
	f.Add(res.TOC)
	f.Add([]byte{})
	f.Add(res.TOC[:len(res.TOC)/2])
	f.Fuzz(func(t *testing.T, toc []byte) {
		d := res.TOCDigest
		if json, _, err := tocJSONFrom(context.Background(), toc, DefaultMaxTOCSize, digest.SHA256); err == nil {
			d = digest.FromString(json)
		}
		b, err := OpenExternal(context.Background(), bytes.NewReader(blob), int64(len(blob)), toc, OpenOptions{TOCDigest: d})
		if err != nil {
			if !errors.Is(err, ErrNotEStargz) && !errors.Is(err, ErrVerify) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, index.ErrInvalid) {
				t.Fatalf("OpenExternal: unclassified error %v", err)
			}
			return
		}
		end := int64(len(blob)) - ExternalTOCFooterSize
		for _, e := range b.Index.Entries() {
			for _, c := range e.Chunks {
				if c.CompressedOffset < 0 || c.CompressedEnd > end || c.CompressedOffset > c.CompressedEnd {
					t.Fatalf("%s: chunk [%d, %d) outside [0, %d)", e.Name, c.CompressedOffset, c.CompressedEnd, end)
				}
			}
		}
	})
}
