// SPDX-License-Identifier: Apache-2.0

package index

import (
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestAddTOC checks each rule of AddTOC, for both formats' Limits where
// they differ (IgnoreOtherSizes): the entry built, or the refusal with
// ErrInvalid and an error that says why.
func TestAddTOC(t *testing.T) {
	d := fuzzDigest.String()
	mt := time.Date(2024, 5, 6, 7, 8, 9, 500000000, time.UTC)
	tests := []struct {
		name    string
		ignore  bool // Limits.IgnoreOtherSizes
		in      TOCEntry
		want    Entry // Name, Type, Mode, Size, ModTime, LinkName, DevMajor, DevMinor, Digest, Xattrs
		wantErr string
	}{
		{name: "fifo", in: TOCEntry{Name: "./f", Type: "fifo", Mode: 0o644}, want: Entry{Name: "f", Type: TypeFifo, Mode: 0o644}},
		{name: "unknown type", in: TOCEntry{Name: "f", Type: "socket"}, wantErr: `unknown type "socket"`},
		{name: "hard link is the format's", in: TOCEntry{Name: "f", Type: "hardlink", LinkName: "g"}, wantErr: `unknown type "hardlink"`},
		{name: "chunk is the format's", in: TOCEntry{Name: "f", Type: "chunk"}, wantErr: `unknown type "chunk"`},
		{name: "mode keeps 07777", in: TOCEntry{Name: "f", Type: "fifo", Mode: 0o107755}, want: Entry{Name: "f", Type: TypeFifo, Mode: 0o7755}},
		{name: "mode 2^32-1", in: TOCEntry{Name: "f", Type: "fifo", Mode: 1<<32 - 1}, want: Entry{Name: "f", Type: TypeFifo, Mode: 0o7777}},
		{name: "mode 2^32", in: TOCEntry{Name: "f", Type: "fifo", Mode: 1 << 32}, wantErr: "has mode"},
		{name: "negative mode", in: TOCEntry{Name: "f", Type: "fifo", Mode: -1}, wantErr: "has mode"},
		{name: "device kept", in: TOCEntry{Name: "c", Type: "char", DevMajor: 1<<32 - 1, DevMinor: 3}, want: Entry{Name: "c", Type: TypeChar, DevMajor: 1<<32 - 1, DevMinor: 3}},
		{name: "block device kept", in: TOCEntry{Name: "b", Type: "block", DevMajor: 8, DevMinor: 1}, want: Entry{Name: "b", Type: TypeBlock, DevMajor: 8, DevMinor: 1}},
		{name: "device major 2^32", in: TOCEntry{Name: "c", Type: "char", DevMajor: 1 << 32}, wantErr: "has device"},
		{name: "negative device minor", in: TOCEntry{Name: "c", Type: "char", DevMinor: -1}, wantErr: "has device"},
		{name: "device on a fifo dropped", in: TOCEntry{Name: "f", Type: "fifo", DevMajor: 1, DevMinor: 3}, want: Entry{Name: "f", Type: TypeFifo}},
		{name: "device on a fifo still checked", in: TOCEntry{Name: "f", Type: "fifo", DevMajor: 1 << 33}, wantErr: "has device"},
		{name: "symlink target kept", in: TOCEntry{Name: "l", Type: "symlink", LinkName: "../x"}, want: Entry{Name: "l", Type: TypeSymlink, LinkName: "../x"}},
		{name: "link name on a dir dropped", in: TOCEntry{Name: "d", Type: "dir", LinkName: "x"}, want: Entry{Name: "d", Type: TypeDir}},
		{name: "link name over the cap", in: TOCEntry{Name: "d", Type: "dir", LinkName: strings.Repeat("x", MaxLinkNameLen+1)}, wantErr: "link target of 4097 bytes"},
		{name: "name over the cap not quoted", in: TOCEntry{Name: strings.Repeat("n", MaxNameLen+1), Type: "socket"}, wantErr: "name of 4097 bytes"},
		{name: "modtime", in: TOCEntry{Name: "f", Type: "fifo", ModTime: "2024-05-06T07:08:09.5Z"}, want: Entry{Name: "f", Type: TypeFifo, ModTime: mt}},
		{name: "modtime with a comma", in: TOCEntry{Name: "f", Type: "fifo", ModTime: "2024-05-06T09:08:09,5+02:00"}, want: Entry{Name: "f", Type: TypeFifo, ModTime: mt}},
		{name: "modtime without fraction", in: TOCEntry{Name: "f", Type: "fifo", ModTime: "2024-05-06T07:08:09Z"}, want: Entry{Name: "f", Type: TypeFifo, ModTime: mt.Truncate(time.Second)}},
		{name: "no modtime", in: TOCEntry{Name: "f", Type: "fifo"}, want: Entry{Name: "f", Type: TypeFifo}},
		{name: "bad modtime", in: TOCEntry{Name: "f", Type: "fifo", ModTime: "yesterday"}, wantErr: `has modtime "yesterday"`},
		{name: "modtime hour 24", in: TOCEntry{Name: "f", Type: "fifo", ModTime: "2024-05-06T24:00:00Z"}, wantErr: "has modtime"},
		{name: "file digest", in: TOCEntry{Name: "f", Type: "reg", Digest: d}, want: Entry{Name: "f", Type: TypeReg, Digest: fuzzDigest}},
		{name: "bad file digest", in: TOCEntry{Name: "f", Type: "reg", Digest: "sha256:zz"}, wantErr: `has digest "sha256:zz"`},
		{name: "unknown digest algorithm", in: TOCEntry{Name: "f", Type: "reg", Digest: "md5:00"}, wantErr: `has digest "md5:00"`},
		{name: "uppercase sha256 digest", in: TOCEntry{Name: "f", Type: "reg", Digest: "sha256:" + strings.ToUpper(d[7:])}, wantErr: "has digest"},
		{name: "digest on a dir ignored", in: TOCEntry{Name: "d", Type: "dir", Digest: "not a digest"}, want: Entry{Name: "d", Type: TypeDir}},
		{name: "negative file size", in: TOCEntry{Name: "f", Type: "reg", Size: -1}, wantErr: "has size -1"},
		{name: "negative file size, zstd", ignore: true, in: TOCEntry{Name: "f", Type: "reg", Size: -1}, wantErr: "has size -1"},
		{name: "size on a dir, eStargz", in: TOCEntry{Name: "d", Type: "dir", Size: 5}, wantErr: "has size 5"},
		{name: "size on a dir, zstd", ignore: true, in: TOCEntry{Name: "d", Type: "dir", Size: 5}, want: Entry{Name: "d", Type: TypeDir}},
		{name: "size on a symlink, zstd", ignore: true, in: TOCEntry{Name: "l", Type: "symlink", LinkName: "x", Size: 1}, want: Entry{Name: "l", Type: TypeSymlink, LinkName: "x"}},
		{name: "root is a dir", in: TOCEntry{Name: "/", Type: "reg"}, wantErr: "the root is a reg"},
		{name: "uid 2^32 (a uid_t cannot hold it)", in: TOCEntry{Name: "f", Type: "fifo", UID: 1 << 32}, wantErr: "owner 4294967296:0"},
		{name: "empty xattrs are none", in: TOCEntry{Name: "f", Type: "fifo", Xattrs: map[string][]byte{}}, want: Entry{Name: "f", Type: TypeFifo}},
		{name: "xattrs kept", in: TOCEntry{Name: "f", Type: "fifo", Xattrs: map[string][]byte{"user.a": {1}}}, want: Entry{Name: "f", Type: TypeFifo, Xattrs: map[string][]byte{"user.a": {1}}}},
		{name: "xattr value over the cap", in: TOCEntry{Name: "f", Type: "fifo", Xattrs: map[string][]byte{"user.a": make([]byte, MaxXattrValueLen+1)}}, wantErr: "of 65537 bytes"},
		{name: "escaping name", in: TOCEntry{Name: "../f", Type: "fifo"}, wantErr: "escapes the layer root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBuilder(Limits{IgnoreOtherSizes: tt.ignore})
			in := tt.in
			typ, err := b.AddTOC(&in)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("AddTOC(%+v) = %v, want ErrInvalid saying %q", tt.in, err, tt.wantErr)
				}
				if len(err.Error()) > 1000 {
					t.Errorf("error of %d bytes", len(err.Error()))
				}
				return
			}
			if err != nil || typ != tt.want.Type {
				t.Fatalf("AddTOC(%+v) = %v, %v; want %v", tt.in, typ, err, tt.want.Type)
			}
			ix, err := b.Build(t.Context())
			if err != nil {
				t.Fatalf("Build() = %v", err)
			}
			got, _ := ix.Lookup(tt.want.Name)
			g := Entry{Name: got.Name, Type: got.Type, Mode: got.Mode, Size: got.Size, ModTime: got.ModTime, LinkName: got.LinkName,
				DevMajor: got.DevMajor, DevMinor: got.DevMinor, Digest: got.Digest, Xattrs: got.Xattrs}
			if !g.ModTime.Equal(tt.want.ModTime) {
				t.Errorf("ModTime = %v, want %v", g.ModTime, tt.want.ModTime)
			}
			g.ModTime = tt.want.ModTime
			if !reflect.DeepEqual(g, tt.want) {
				t.Errorf("AddTOC(%+v) built\n%+v, want\n%+v", tt.in, g, tt.want)
			}
		})
	}
}

// TestAddTOCModTimeLayouts: eStargz read modtimes with time.RFC3339 and
// zstd:chunked with time.RFC3339Nano; time.Parse accepts the same
// strings with either (fractions too), so one rule loses nothing.
func TestAddTOCModTimeLayouts(t *testing.T) {
	for _, s := range []string{
		"2020-01-01T00:00:00Z", "2020-01-01T00:00:00.5Z", "2020-01-01T00:00:00,5Z", "2020-01-01T00:00:00.Z",
		"2020-01-01t00:00:00z", "2020-01-01T00:00:00.123456789123Z", "2020-01-01T00:00:00+24:00",
		"2020-01-01T00:00:60Z", "0000-01-01T00:00:00Z", "2020-01-01 00:00:00Z", "2020-01-01T00:00:00+0100",
	} {
		a, errA := time.Parse(time.RFC3339, s)
		n, errN := time.Parse(time.RFC3339Nano, s)
		if (errA == nil) != (errN == nil) || !a.Equal(n) {
			t.Errorf("%q: RFC3339 %v, %v; RFC3339Nano %v, %v", s, a, errA, n, errN)
		}
		_, err := NewBuilder(Limits{}).AddTOC(&TOCEntry{Name: "f", Type: "fifo", ModTime: s})
		if (err == nil) != (errN == nil) {
			t.Errorf("AddTOC(modtime %q) = %v, time.Parse error %v", s, err, errN)
		}
	}
}

// TestAddTOCModTimeRemembered: a modtime shared by consecutive entries is
// parsed once and the same for each.
func TestAddTOCModTimeRemembered(t *testing.T) {
	b := NewBuilder(Limits{})
	for _, n := range []string{"a", "b"} {
		if _, err := b.AddTOC(&TOCEntry{Name: n, Type: "fifo", ModTime: "2001-02-03T04:05:06Z"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.AddTOC(&TOCEntry{Name: "c", Type: "fifo", ModTime: "2001-02-03T04:05:06Zjunk"}); err == nil {
		t.Error("a modtime that extends the remembered one was accepted")
	}
	ix, err := b.Build(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	a, _ := ix.Lookup("a")
	bb, _ := ix.Lookup("b")
	if want := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC); !a.ModTime.Equal(want) || !bb.ModTime.Equal(want) {
		t.Errorf("ModTimes %v, %v; want %v", a.ModTime, bb.ModTime, want)
	}
}

func TestCheckChunkName(t *testing.T) {
	tests := []struct {
		chunk, file string
		wantErr     string
	}{
		{"a/f", "a/f", ""},
		{"", "a/f", ""},
		{"./a//f", "/a/f", ""},
		{"a/g", "a/f", `chunk entry "a/g" follows file "a/f"`},
		{"../a/f", "a/f", "follows file"},
		{"a/f", "", "follows no regular file"},
		{"", "", "follows no regular file"},
	}
	for _, tt := range tests {
		err := CheckChunkName(tt.chunk, tt.file)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("CheckChunkName(%q, %q) = %v, want %q", tt.chunk, tt.file, err, tt.wantErr)
		}
	}
}

func TestDecodeXattr(t *testing.T) {
	max := base64.StdEncoding.EncodeToString(make([]byte, MaxXattrValueLen))
	// Over the cap whatever the padding; one byte over is the Builder's
	// to refuse (TestAddTOC).
	over := base64.StdEncoding.EncodeToString(make([]byte, MaxXattrValueLen+3))
	one := base64.StdEncoding.EncodeToString(make([]byte, MaxXattrValueLen+1))
	tests := []struct {
		name, value string
		want        []byte
		wantErr     string
	}{
		{"user.a", "AAEC", []byte{0, 1, 2}, ""},
		{"user.a", "", []byte{}, ""},
		{"user.a", "YQ==", []byte("a"), ""},
		{"user.a", "YQ", nil, "not base64"},   // padding required, as encoding/json
		{"user.a", "YQ==\n", []byte("a"), ""}, // line breaks skipped, as encoding/json
		{"user.a", "Y-_=", nil, "not base64"}, // the URL alphabet is not the standard one
		{"user.a", "!!", nil, `xattr "user.a" is not base64`},
		{"user.a", max, make([]byte, MaxXattrValueLen), ""},
		{"user.a", max + "\n\n\n\n", make([]byte, MaxXattrValueLen), ""},
		{"user.a", over, nil, "of more than 65536 bytes"},
		{"user.a", one, make([]byte, MaxXattrValueLen+1), ""},
		{strings.Repeat("k", MaxXattrNameLen), "YQ==", []byte("a"), ""},
		{strings.Repeat("k", MaxXattrNameLen+1), "YQ==", nil, "xattr name of 256 bytes"},
	}
	for _, tt := range tests {
		got, err := DecodeXattr(tt.name, tt.value)
		if tt.wantErr != "" {
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("DecodeXattr(%.20q, %.20q) = %v, want ErrInvalid saying %q", tt.name, tt.value, err, tt.wantErr)
			}
			continue
		}
		if err != nil || string(got) != string(tt.want) {
			t.Errorf("DecodeXattr(%.20q, %.20q) = %d bytes, %v; want %d bytes", tt.name, tt.value, len(got), err, len(tt.want))
		}
	}
}
