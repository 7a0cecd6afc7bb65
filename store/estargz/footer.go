// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"encoding/binary"
	"fmt"
)

// Footer sizes. An eStargz blob ends in an empty gzip member whose header
// extra field points at the TOC; the three layouts differ only in that
// field, so each has a fixed size.
const (
	// FooterSize is the size of the eStargz footer, and the number of tail
	// bytes a reader should hand to ParseFooter.
	FooterSize = 51
	// LegacyFooterSize is the size of the footer of the original stargz
	// format, which lacks the "SG" subfield header.
	LegacyFooterSize = 47
	// ExternalTOCFooterSize is the size of the footer of a blob whose TOC
	// is stored in a separate image.
	ExternalTOCFooterSize = 46
)

const (
	footerMagic      = "STARGZ"
	externalTOCMagic = "STARGZEXTERNALTOC"
	// footerBody is the rest of the empty gzip member after its header: a
	// final stored deflate block of length 0, then CRC32 = 0 and ISIZE = 0.
	footerBodySize = 5 + 8
)

// Footer is what the last bytes of an eStargz blob say.
type Footer struct {
	// TOCOffset is the blob offset of the gzip member holding the TOC.
	// It is 0 when External is set.
	TOCOffset int64
	// Size is the footer's length in bytes: FooterSize, LegacyFooterSize
	// or ExternalTOCFooterSize. The TOC region is
	// [TOCOffset, blobSize-Size).
	Size int64
	// External reports a footer without a TOC offset: the TOC lives in a
	// separate image. ParseFooter returns it together with ErrExternalTOC.
	External bool
}

// ParseFooter parses the footer at the end of tail, which holds the last
// bytes of a blob: FooterSize of them, or the whole blob when it is
// shorter. The three layouts are tried from the longest down, so that a
// legacy or external footer is found at the end of a 51-byte tail.
//
// It returns an error wrapping ErrNotEStargz when no layout matches, and
// the footer together with an error wrapping ErrExternalTOC for a blob
// whose TOC is stored elsewhere.
func ParseFooter(tail []byte) (Footer, error) {
	if x, ok := footerExtra(tail, FooterSize); ok {
		if len(x) == 4+22 && x[0] == 'S' && x[1] == 'G' && binary.LittleEndian.Uint16(x[2:4]) == 22 {
			return tocFooter(x[4:], FooterSize)
		}
	}
	if x, ok := footerExtra(tail, LegacyFooterSize); ok && len(x) == 22 {
		return tocFooter(x, LegacyFooterSize)
	}
	if x, ok := footerExtra(tail, ExternalTOCFooterSize); ok {
		if len(x) == 4+17 && x[0] == 'S' && x[1] == 'G' &&
			binary.LittleEndian.Uint16(x[2:4]) == 17 && string(x[4:]) == externalTOCMagic {
			f := Footer{Size: ExternalTOCFooterSize, External: true}
			return f, fmt.Errorf("%w: the footer names no TOC offset", ErrExternalTOC)
		}
	}
	return Footer{}, fmt.Errorf("%w: no eStargz footer in the last %d bytes", ErrNotEStargz, len(tail))
}

// footerExtra returns the gzip FEXTRA field of the size-byte gzip member
// header at the end of tail, if there is one of exactly that size.
func footerExtra(tail []byte, size int) ([]byte, bool) {
	if len(tail) < size {
		return nil, false
	}
	b := tail[len(tail)-size:]
	// ID1 ID2 CM=deflate FLG=FEXTRA only; MTIME, XFL and OS are ignored.
	if b[0] != 0x1f || b[1] != 0x8b || b[2] != 8 || b[3] != 0x04 {
		return nil, false
	}
	xlen := int(binary.LittleEndian.Uint16(b[10:12]))
	if 12+xlen+footerBodySize != size {
		return nil, false
	}
	return b[12 : 12+xlen], true
}

// tocFooter parses the "%016xSTARGZ" subfield.
func tocFooter(sub []byte, size int64) (Footer, error) {
	if string(sub[16:]) != footerMagic {
		return Footer{}, fmt.Errorf("%w: footer lacks the %s magic", ErrNotEStargz, footerMagic)
	}
	off, ok := parseHex16(sub[:16])
	if !ok {
		return Footer{}, fmt.Errorf("%w: footer TOC offset %q is not 16 hex digits", ErrNotEStargz, sub[:16])
	}
	return Footer{TOCOffset: off, Size: size}, nil
}

// parseHex16 parses exactly 16 hex digits into a non-negative int64. Unlike
// strconv.ParseInt it accepts no sign, so "-000000000000001" is refused.
func parseHex16(b []byte) (int64, bool) {
	var v uint64
	for _, c := range b {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	if v > 1<<63-1 {
		return 0, false
	}
	return int64(v), true
}

// AppendFooter appends to dst the 51-byte eStargz footer pointing at a
// TOC member at tocOffset: an empty gzip member whose extra field is "SG",
// LEN=22, "%016xSTARGZ". Build writes it; tools that rewrite a blob's TOC
// (tests crafting hostile layers) append it after their TOC member.
func AppendFooter(dst []byte, tocOffset int64) []byte {
	dst = append(dst, 0x1f, 0x8b, 8, 0x04, 0, 0, 0, 0, 0, 0xff) // header, FEXTRA
	dst = binary.LittleEndian.AppendUint16(dst, 4+22)           // XLEN
	dst = append(dst, 'S', 'G')
	dst = binary.LittleEndian.AppendUint16(dst, 22)
	dst = fmt.Appendf(dst, "%016x%s", tocOffset, footerMagic)
	dst = append(dst, 1, 0, 0, 0xff, 0xff)     // final stored block, LEN 0
	return append(dst, 0, 0, 0, 0, 0, 0, 0, 0) // CRC32, ISIZE
}
