// SPDX-License-Identifier: Apache-2.0

package zstdchunked

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store/index"
)

// FuzzParseFooter: any tail parses or fails with ErrNotZstdChunked, and a
// parsed footer round-trips through AppendFooter.
func FuzzParseFooter(f *testing.F) {
	f.Add(AppendFooter(nil, Footer{TOC: Position{100, 20, 40}, ManifestType: 1, TarSplit: Position{128, 5, 7}}))
	f.Add(make([]byte, FooterSize))
	f.Add([]byte("GNUlInUx"))
	f.Fuzz(func(t *testing.T, tail []byte) {
		ft, err := ParseFooter(tail)
		if err != nil {
			if !errors.Is(err, ErrNotZstdChunked) {
				t.Fatalf("ParseFooter error %v is not ErrNotZstdChunked", err)
			}
			return
		}
		if !bytes.HasSuffix(AppendFooter(nil, ft), tail[len(tail)-FooterSize:]) {
			t.Fatalf("footer %+v does not round-trip", ft)
		}
	})
}

// FuzzParsePosition: a parsed position is non-negative and survives
// printing and parsing again (leading zeros are accepted, as
// containers/storage's Sscanf accepts them).
func FuzzParsePosition(f *testing.F) {
	for _, s := range []string{"100:20:40:1", "0:0:0:1", "-1:2:3:1", "1:2:3", "+1:2:3:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePosition(s)
		if err != nil {
			return
		}
		if p.Offset < 0 || p.Length < 0 || p.UncompressedLength < 0 {
			t.Fatalf("ParsePosition(%q) = %+v, negative", s, p)
		}
		printed := fmt.Sprintf("%d:%d:%d:1", p.Offset, p.Length, p.UncompressedLength)
		if q, err := ParsePosition(printed); err != nil || q != p {
			t.Fatalf("ParsePosition(%q) = %+v, but ParsePosition(%q) = %+v, %v", s, p, printed, q, err)
		}
	})
}

// FuzzOpen feeds hostile TOC JSON, verified and so trusted by Open, in a
// blob with one data frame. Open must not panic, and an index it accepts
// must keep every chunk inside the blob before the TOC, cover every file,
// and read back verified or fail with ErrVerify.
func FuzzOpen(f *testing.F) {
	data := []byte("hello, world")
	d := digest.FromBytes(data).String()
	f.Add(tocDoc(fmt.Sprintf(`{"type":"reg","name":"a","size":12,"digest":%q,"offset":10,"endOffset":31}`, d)))
	f.Add(tocDoc(`{"type":"reg","name":"a","size":12,"offset":10,"endOffset":31,"chunkSize":6,"chunkType":"zeros"}`,
		fmt.Sprintf(`{"type":"chunk","name":"a","offset":10,"chunkOffset":6,"chunkSize":6,"chunkDigest":%q}`, d)))
	f.Add(tocDoc(`{"type":"dir","name":"d","xattrs":{"user.a":"YQ=="}}`, `{"type":"hardlink","name":"d/h","linkName":"a"}`,
		`{"type":"symlink","name":"s","linkName":"../../x"}`, `{"type":"char","name":"c","devMajor":1,"devMinor":3}`))
	f.Add([]byte(`{"version":1,"entries":[],"tarSplitDigest":"sha256:00"}`))
	f.Add([]byte(`{"version":1,"entries":[{"type":"reg","name":"a","size":1e3}]}`))
	for _, seed := range capSeeds(d) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tocJSON []byte) {
		var w handBlob
		w.frame([]byte("tar header"))
		w.frame(data)
		blob, td, ann := w.finish(tocJSON)
		b, err := Open(context.Background(), bytes.NewReader(blob), int64(len(blob)), OpenOptions{TOCDigest: td, Annotations: ann})
		if err != nil {
			if !errors.Is(err, index.ErrInvalid) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrNotZstdChunked) {
				t.Fatalf("Open error %v is in no class", err)
			}
			return
		}
		tocStart := b.TOC.Offset - skippableHeaderSize
		for _, e := range b.Index.Entries() {
			var covered int64
			for _, c := range e.Chunks {
				if c.Offset != covered || c.Size <= 0 {
					t.Fatalf("%s: chunk %+v after %d bytes", e.Name, c, covered)
				}
				covered = c.End()
				if c.Zero {
					if c.Size > zeroPiece {
						t.Fatalf("%s: zero chunk of %d bytes", e.Name, c.Size)
					}
					continue
				}
				if c.Size > index.MaxChunkSize || c.CompressedEnd-c.CompressedOffset > index.MaxCompressedChunk {
					t.Fatalf("%s: chunk %+v over the caps", e.Name, c)
				}
				if c.CompressedOffset < 0 || c.CompressedEnd <= c.CompressedOffset || c.CompressedEnd > tocStart {
					t.Fatalf("%s: chunk range [%d, %d) outside [0, %d)", e.Name, c.CompressedOffset, c.CompressedEnd, tocStart)
				}
				if c.Size > 1<<20 {
					continue // valid but too large to decode in a fuzz run
				}
				dst := make([]byte, c.Size)
				if err := DecodeChunk(dst, blob[c.CompressedOffset:c.CompressedEnd], c); err != nil && !errors.Is(err, ErrVerify) {
					t.Fatalf("%s: DecodeChunk error %v is not ErrVerify", e.Name, err)
				}
			}
			if covered != e.Size {
				t.Fatalf("%s: chunks cover %d of %d bytes", e.Name, covered, e.Size)
			}
		}
	})
}

// capSeeds are TOC documents at and past the hard caps of package index,
// for a blob whose data frame (of digest d) is at [10, 31).
func capSeeds(d string) [][]byte {
	chain := []string{`{"type":"fifo","name":"f"}`}
	for i := range 50 {
		target := fmt.Sprintf("l%d", i+1) // the next link, later in the TOC
		if i == 49 {
			target = "f"
		}
		chain = append(chain, fmt.Sprintf(`{"type":"hardlink","name":"l%d","linkName":%q}`, i, target))
	}
	return [][]byte{
		tocDoc(`{"type":"fifo","name":"u","uid":4294967296}`),
		tocDoc(`{"type":"fifo","name":"u","uid":4294967294,"gid":4294967295}`),
		tocDoc(fmt.Sprintf(`{"type":"reg","name":"a","size":1099511627776,"digest":%q,"offset":10,"endOffset":31}`, d)),
		tocDoc(fmt.Sprintf(`{"type":"reg","name":"a","size":12,"digest":%q,"offset":10,"endOffset":1125899906842624}`, d)),
		tocDoc(fmt.Sprintf(`{"type":"reg","name":"a","size":12,"digest":%q,"offset":31,"endOffset":10}`, d)),
		tocDoc(fmt.Sprintf(`{"type":"reg","name":"a","size":67108865,"offset":10,"endOffset":31,"chunkSize":67108865,"chunkDigest":%q}`, d)),
		tocDoc(`{"type":"reg","name":"z","size":68719476736,"offset":10,"endOffset":31,"chunkType":"zeros"}`),
		tocDoc(fmt.Sprintf(`{"type":"symlink","name":"s","linkName":%q}`, strings.Repeat("t", index.MaxLinkNameLen+1))),
		tocDoc(chain...),
		// The rules package index applies to both formats (AddTOC).
		tocDoc(`{"type":"dir","name":"d","size":5}`, `{"type":"symlink","name":"s","linkName":"d","size":1}`),
		tocDoc(`{"type":"fifo","name":"f","mode":33188,"modtime":"2024-05-06T07:08:09,5+02:00","devMajor":1,"devMinor":3}`),
		tocDoc(`{"type":"fifo","name":"f","mode":4294967296,"modtime":"2024-05-06T24:00:00Z"}`),
		tocDoc(`{"type":"dir","name":"d","digest":"not a digest","linkName":"x"}`),
		tocDoc(`{"type":"fifo","name":"x","xattrs":{"user.a":null,"user.b":"YQ"}}`),
		tocDoc(fmt.Sprintf(`{"type":"fifo","name":"x","xattrs":{"user.a":%q}}`, strings.Repeat("A", 90000))),
		tocDoc(fmt.Sprintf(`{"type":"reg","name":"a","size":12,"offset":10,"endOffset":31,"chunkSize":6,"chunkDigest":%q}`, d),
			fmt.Sprintf(`{"type":"chunk","name":"./a","offset":10,"chunkOffset":6,"chunkSize":6,"chunkDigest":%q}`, d)),
		tocDoc(`{"type":"dir","name":"d"}`, `{"type":"chunk","name":"d","chunkSize":1}`),
	}
}

// FuzzOpenBlob feeds arbitrary blobs, annotations and footers, with the
// TOC digest taken from wherever the blob claims its TOC is (so the fuzzer
// gets past verification). Open must not panic or over-allocate.
func FuzzOpenBlob(f *testing.F) {
	var w handBlob
	w.frame([]byte("x"))
	blob, _, ann := w.finish(tocDoc(`{"type":"dir","name":"d"}`))
	f.Add(blob, ann[ManifestPositionAnnotation])
	f.Add(blob, "")
	f.Add(blob[:len(blob)-3], "")
	f.Fuzz(func(t *testing.T, blob []byte, position string) {
		var ann map[string]string
		if position != "" {
			ann = map[string]string{ManifestPositionAnnotation: position}
		}
		td := digest.FromString("unknown")
		if p, err := ParsePosition(position); err == nil && p.Offset >= 0 && p.End() <= int64(len(blob)) && p.Length >= 0 {
			td = digest.FromBytes(blob[p.Offset:p.End()])
		} else if len(blob) >= FooterSize {
			off := binary.LittleEndian.Uint64(blob[len(blob)-FooterSize:])
			n := binary.LittleEndian.Uint64(blob[len(blob)-FooterSize+8:])
			if off <= uint64(len(blob)) && n <= uint64(len(blob))-off {
				td = digest.FromBytes(blob[off : off+n])
			}
		}
		_, err := Open(context.Background(), bytes.NewReader(blob), int64(len(blob)), OpenOptions{TOCDigest: td, Annotations: ann, MaxTOCSize: 1 << 20,
			UncompressedSize: true, MaxTarSplitSize: 1 << 20})
		if err != nil && !errors.Is(err, index.ErrInvalid) && !errors.Is(err, ErrTooLarge) &&
			!errors.Is(err, ErrNotZstdChunked) && !errors.Is(err, ErrVerify) {
			t.Fatalf("Open error %v is in no class", err)
		}
	})
}

// FuzzDecodeChunk: arbitrary compressed bytes never make DecodeChunk
// panic, write past dst, or succeed with bytes that fail the digest.
func FuzzDecodeChunk(f *testing.F) {
	f.Add(compress([]byte("hello")), int64(5))
	f.Add(compress(make([]byte, 1<<16)), int64(10))
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0x58}, int64(1))
	f.Fuzz(func(t *testing.T, comp []byte, size int64) {
		if size <= 0 || size > 1<<20 {
			return
		}
		dst := make([]byte, size)
		err := DecodeChunk(dst, comp, index.Chunk{Size: size, Digest: digest.FromString("hello")})
		if err == nil && string(dst) != "hello" {
			t.Fatalf("DecodeChunk accepted %q", dst)
		}
		if err != nil && !errors.Is(err, ErrVerify) {
			t.Fatalf("DecodeChunk error %v is not ErrVerify", err)
		}
	})
}

// FuzzTarSplit: any tar-split bytes (with a matching digest) give a size
// or an error in a class, never a panic or unbounded work.
func FuzzTarSplit(f *testing.F) {
	f.Add(compress([]byte(`{"type":2,"payload":"AAAA","position":0}` + "\n" + `{"type":1,"name":"a","size":5,"position":1}`)))
	f.Add(compress([]byte(`{"type":1,"size":-5}`)))
	f.Add([]byte("not zstd"))
	f.Fuzz(func(t *testing.T, compressed []byte) {
		n, err := tarSize(context.Background(), compressed, digest.FromBytes(compressed), 1<<20)
		if err != nil {
			if !errors.Is(err, ErrNotZstdChunked) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("tarSize error %v is in no class", err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("tarSize = %d", n)
		}
	})
}
