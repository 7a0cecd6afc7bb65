// SPDX-License-Identifier: Apache-2.0

package zstdchunked

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Layout constants of the current zstd:chunked format
// (containers/storage ≥ 1.50).
const (
	// FooterSize is the size of the footer's payload, the last bytes of
	// the blob. It sits in a skippable frame whose 8-byte header precedes
	// it.
	FooterSize = 64
	// FooterMagic ends the footer.
	FooterMagic = "GNUlInUx"
	// ManifestTypeCRFS is the only manifest (TOC) type there is.
	ManifestTypeCRFS = 1
	// skippableHeaderSize is a skippable frame's magic and length.
	skippableHeaderSize = 8
)

// Annotation keys on a zstd:chunked layer descriptor.
const (
	// ManifestChecksumAnnotation is the sha256 of the compressed TOC: the
	// layer's TOC digest.
	ManifestChecksumAnnotation = "io.github.containers.zstd-chunked.manifest-checksum"
	// ManifestPositionAnnotation is "offset:compressedLen:uncompressedLen:type"
	// of the TOC.
	ManifestPositionAnnotation = "io.github.containers.zstd-chunked.manifest-position"
	// TarSplitPositionAnnotation is "offset:compressedLen:uncompressedLen"
	// of the tar-split data.
	TarSplitPositionAnnotation = "io.github.containers.zstd-chunked.tarsplit-position"
)

// skippableMagic starts a zstd skippable frame (RFC 8878 §3.1.2).
var skippableMagic = [4]byte{0x50, 0x2a, 0x4d, 0x18}

// Position locates a zstd-compressed region (the TOC or the tar-split) in
// a blob: Offset is the first byte of the zstd frame, inside its skippable
// frame.
type Position struct {
	Offset             int64
	Length             int64 // compressed
	UncompressedLength int64
}

// End returns the offset just past the region.
func (p Position) End() int64 { return p.Offset + p.Length }

// Footer is what the last FooterSize bytes of a zstd:chunked blob say.
type Footer struct {
	TOC          Position
	ManifestType uint64
	TarSplit     Position
}

// ParseFooter parses the footer at the end of tail, which holds the last
// bytes of a blob (at least FooterSize). When tail also holds the 8 bytes
// before the footer, they must be the footer's skippable frame header.
// Errors wrap ErrNotZstdChunked.
func ParseFooter(tail []byte) (Footer, error) {
	if len(tail) < FooterSize {
		return Footer{}, fmt.Errorf("%w: %d bytes is too small for a footer", ErrNotZstdChunked, len(tail))
	}
	b := tail[len(tail)-FooterSize:]
	if string(b[FooterSize-len(FooterMagic):]) != FooterMagic {
		return Footer{}, fmt.Errorf("%w: no %s footer magic", ErrNotZstdChunked, FooterMagic)
	}
	if len(tail) >= FooterSize+skippableHeaderSize {
		h := tail[len(tail)-FooterSize-skippableHeaderSize:]
		if [4]byte(h[:4]) != skippableMagic || binary.LittleEndian.Uint32(h[4:8]) != FooterSize {
			return Footer{}, fmt.Errorf("%w: footer is not in a %d-byte skippable frame", ErrNotZstdChunked, FooterSize)
		}
	}
	var u [7]uint64
	for i := range u {
		u[i] = binary.LittleEndian.Uint64(b[8*i:])
		if u[i] > math.MaxInt64 {
			return Footer{}, fmt.Errorf("%w: footer field %d is %d", ErrNotZstdChunked, i, u[i])
		}
	}
	f := Footer{
		TOC:          Position{int64(u[0]), int64(u[1]), int64(u[2])},
		ManifestType: u[3],
		TarSplit:     Position{int64(u[4]), int64(u[5]), int64(u[6])},
	}
	if f.ManifestType != ManifestTypeCRFS {
		return Footer{}, fmt.Errorf("%w: manifest type %d, want %d", ErrNotZstdChunked, f.ManifestType, ManifestTypeCRFS)
	}
	return f, nil
}

// AppendFooter appends the footer of f, in its skippable frame, to dst.
func AppendFooter(dst []byte, f Footer) []byte {
	dst = append(dst, skippableMagic[:]...)
	dst = binary.LittleEndian.AppendUint32(dst, FooterSize)
	for _, v := range []int64{f.TOC.Offset, f.TOC.Length, f.TOC.UncompressedLength, int64(f.ManifestType),
		f.TarSplit.Offset, f.TarSplit.Length, f.TarSplit.UncompressedLength} {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(v))
	}
	return append(dst, FooterMagic...)
}

// ParsePosition parses the manifest-position annotation,
// "offset:compressedLen:uncompressedLen:type", whose type must be 1.
// Every field is a plain non-negative decimal. Errors wrap
// ErrNotZstdChunked.
func ParsePosition(s string) (Position, error) {
	f := strings.Split(s, ":")
	if len(f) != 4 {
		return Position{}, fmt.Errorf("%w: manifest position %q does not have 4 fields", ErrNotZstdChunked, s)
	}
	var v [4]int64
	for i, x := range f {
		n, err := strconv.ParseUint(x, 10, 63)
		if err != nil {
			return Position{}, fmt.Errorf("%w: manifest position %q: field %d: %v", ErrNotZstdChunked, s, i, err)
		}
		v[i] = int64(n)
	}
	if v[3] != ManifestTypeCRFS {
		return Position{}, fmt.Errorf("%w: manifest position %q: type %d, want %d", ErrNotZstdChunked, s, v[3], ManifestTypeCRFS)
	}
	return Position{v[0], v[1], v[2]}, nil
}
