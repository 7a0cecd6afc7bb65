// SPDX-License-Identifier: Apache-2.0

package zstdchunked

import (
	"bytes"
	"errors"
	"testing"
)

func TestParseFooter(t *testing.T) {
	f := Footer{TOC: Position{100, 20, 40}, ManifestType: ManifestTypeCRFS, TarSplit: Position{128, 5, 7}}
	good := AppendFooter(nil, f)
	badMagic := bytes.Clone(good)
	badMagic[len(badMagic)-1] = 'X'
	badType := AppendFooter(nil, Footer{TOC: f.TOC, ManifestType: 2})
	badFrame := bytes.Clone(good)
	badFrame[0] = 0
	huge := bytes.Clone(good)
	huge[8+7] = 0x80 // TOC offset >= 2^63
	tests := []struct {
		name    string
		tail    []byte
		want    Footer
		wantErr error
	}{
		{"with frame header", good, f, nil},
		{"footer only", good[skippableHeaderSize:], f, nil},
		{"with data before", append([]byte("zstd frames"), good...), f, nil},
		{"bad magic", badMagic, Footer{}, ErrNotZstdChunked},
		{"bad type", badType, Footer{}, ErrNotZstdChunked},
		{"bad frame header", badFrame, Footer{}, ErrNotZstdChunked},
		{"field over int64", huge, Footer{}, ErrNotZstdChunked},
		{"short", good[:40], Footer{}, ErrNotZstdChunked},
		{"legacy magic", append(make([]byte, 32), "GnUlInUx"...), Footer{}, ErrNotZstdChunked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseFooter(tt.tail)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) || got != tt.want {
				t.Errorf("ParseFooter = %+v, %v, want %+v, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParsePosition(t *testing.T) {
	tests := []struct {
		in      string
		want    Position
		wantErr bool
	}{
		{"100:20:40:1", Position{100, 20, 40}, false},
		{"0:0:0:1", Position{}, false},
		{"100:20:40:2", Position{}, true},
		{"100:20:40", Position{}, true},
		{"100:20:40:1:5", Position{}, true},
		{"+100:20:40:1", Position{}, true},
		{"-1:20:40:1", Position{}, true},
		{"9223372036854775808:1:1:1", Position{}, true},
		{" 1:2:3:1", Position{}, true},
		{"", Position{}, true},
	}
	for _, tt := range tests {
		got, err := ParsePosition(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParsePosition(%q) = %+v, %v, want %+v (error %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrNotZstdChunked) {
			t.Errorf("ParsePosition(%q) error %v does not wrap ErrNotZstdChunked", tt.in, err)
		}
	}
}
