// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"
)

// rdLegacyFooter is the 47-byte footer of the original stargz format.
func rdLegacyFooter(off int64) []byte {
	b := []byte{0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff}
	b = binary.LittleEndian.AppendUint16(b, 22)
	b = fmt.Appendf(b, "%016xSTARGZ", off)
	return append(b, 1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0)
}

// rdExternalFooter is the 46-byte footer of a blob with an external TOC.
func rdExternalFooter() []byte {
	b := []byte{0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff}
	b = binary.LittleEndian.AppendUint16(b, 21)
	b = append(b, 'S', 'G', 17, 0)
	b = append(b, externalTOCMagic...)
	return append(b, 1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0)
}

func rdReplaceAt(b []byte, i int, s string) []byte {
	b = bytes.Clone(b)
	copy(b[i:], s)
	return b
}

func rdFooterCases() []struct {
	name    string
	tail    []byte
	want    Footer
	wantErr error
} {
	pad := bytes.Repeat([]byte{0xaa}, 40)
	f := AppendFooter(nil, 0xb53)
	return []struct {
		name    string
		tail    []byte
		want    Footer
		wantErr error
	}{
		{"estargz", f, Footer{TOCOffset: 0xb53, Size: FooterSize}, nil},
		{"estargz after other bytes", append(bytes.Clone(pad), f...), Footer{TOCOffset: 0xb53, Size: FooterSize}, nil},
		{"estargz max offset", AppendFooter(nil, 1<<63-1), Footer{TOCOffset: 1<<63 - 1, Size: FooterSize}, nil},
		{"estargz uppercase hex", rdReplaceAt(f, 16, "0000000000000B53"), Footer{TOCOffset: 0xb53, Size: FooterSize}, nil},
		{"legacy", append(bytes.Clone(pad[:4]), rdLegacyFooter(0x1234)...), Footer{TOCOffset: 0x1234, Size: LegacyFooterSize}, nil},
		{"legacy exact", rdLegacyFooter(7), Footer{TOCOffset: 7, Size: LegacyFooterSize}, nil},
		{"external", append(bytes.Clone(pad[:5]), rdExternalFooter()...), Footer{Size: ExternalTOCFooterSize, External: true}, ErrExternalTOC},
		{"empty", nil, Footer{}, ErrNotEStargz},
		{"short", f[1:], Footer{}, ErrNotEStargz},
		{"zeros", make([]byte, 51), Footer{}, ErrNotEStargz},
		{"bad magic", rdReplaceAt(f, 32, "STARGY"), Footer{}, ErrNotEStargz},
		{"bad gzip id", rdReplaceAt(f, 0, "\x1f\x8c"), Footer{}, ErrNotEStargz},
		{"not deflate", rdReplaceAt(f, 2, "\x07"), Footer{}, ErrNotEStargz},
		{"extra flags", rdReplaceAt(f, 3, "\x0c"), Footer{}, ErrNotEStargz},
		{"bad subfield id", rdReplaceAt(f, 12, "GS"), Footer{}, ErrNotEStargz},
		{"bad subfield len", rdReplaceAt(f, 14, "\x15"), Footer{}, ErrNotEStargz},
		{"bad xlen", rdReplaceAt(f, 10, "\x1b"), Footer{}, ErrNotEStargz},
		{"negative offset", rdReplaceAt(f, 16, "-000000000000001"), Footer{}, ErrNotEStargz},
		{"offset overflows int64", rdReplaceAt(f, 16, "8000000000000000"), Footer{}, ErrNotEStargz},
		{"offset not hex", rdReplaceAt(f, 16, "00000000000000g1"), Footer{}, ErrNotEStargz},
		{"legacy bad magic", rdReplaceAt(rdLegacyFooter(1), 28, "STARGY"), Footer{}, ErrNotEStargz},
		{"external bad magic", rdReplaceAt(rdExternalFooter(), 16, "X"), Footer{}, ErrNotEStargz},
	}
}

func TestParseFooter(t *testing.T) {
	for _, tt := range rdFooterCases() {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFooter(tt.tail)
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("ParseFooter(%x) error = %v, want %v", tt.tail, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseFooter(%x) = %+v, want %+v", tt.tail, got, tt.want)
			}
		})
	}
}

func TestAppendFooterLayout(t *testing.T) {
	// The dump from the format notes: ...1a 00 53 47 16 00 "0000000000000b53STARGZ" 01 00 00 ff ff 00...
	f := AppendFooter(nil, 0xb53)
	if len(f) != FooterSize {
		t.Fatalf("len = %d, want %d", len(f), FooterSize)
	}
	want := "\x1a\x00SG\x16\x000000000000000b53STARGZ\x01\x00\x00\xff\xff"
	if got := string(f[10 : 10+len(want)]); got != want {
		t.Errorf("footer[10:] = %q, want %q", got, want)
	}
	// It must be a valid, empty gzip member, so the blob stays one stream.
	zr, err := gzip.NewReader(bytes.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(zr); err != nil || len(b) != 0 {
		t.Errorf("gunzip(footer) = %q, %v; want empty", b, err)
	}
}
