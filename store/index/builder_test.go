// SPDX-License-Identifier: Apache-2.0

package index

import (
	"errors"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

func TestClean(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  error
	}{
		{"", "", nil},
		{".", "", nil},
		{"./", "", nil},
		{"/", "", nil},
		{"a", "a", nil},
		{"./a/b/", "a/b", nil},
		{"/a//b/./c", "a/b/c", nil},
		{"a/../b", "b", nil},
		{"a/..", "", nil},
		{"..", "", ErrInvalid},
		{"../a", "", ErrInvalid},
		{"a/../../b", "", ErrInvalid},
		{"/../a", "", ErrInvalid}, // absolute names are relative to the layer root
		{"a\x00b", "", ErrInvalid},
		{"..a", "..a", nil},
	}
	for _, tt := range tests {
		got, err := Clean(tt.in)
		if got != tt.want || !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
			t.Errorf("Clean(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// op is one builder call in a table test.
type op func(b *Builder) error

func add(name string, typ Type, size int64) op {
	return func(b *Builder) error { return b.Add(Entry{Name: name, Type: typ, Size: size, Mode: 0o644}) }
}

func hardlink(name, target string) op {
	return func(b *Builder) error { return b.AddHardlink(name, target) }
}

func chunk(name string, off, size int64) op {
	return func(b *Builder) error {
		return b.AddChunk(name, Chunk{Offset: off, Size: size, CompressedOffset: 10 + off, CompressedEnd: 20 + off, Digest: fuzzDigest})
	}
}

func rawChunk(name string, c Chunk) op {
	return func(b *Builder) error { return b.AddChunk(name, c) }
}

func TestBuilderErrors(t *testing.T) {
	tests := []struct {
		name string
		lim  Limits
		ops  []op
		// failAt is the index of the op that must fail; len(ops) means Build.
		failAt int
	}{
		{"escaping name", Limits{}, []op{add("../x", TypeFifo, 0)}, 0},
		{"unknown type", Limits{}, []op{add("x", Type(0), 0)}, 0},
		{"type past the last", Limits{}, []op{add("x", TypeFifo+1, 0)}, 0},
		{"negative size", Limits{}, []op{add("x", TypeReg, -1)}, 0},
		{"size on a dir", Limits{}, []op{add("x", TypeDir, 1)}, 0},
		{"root as a file", Limits{}, []op{add("/", TypeReg, 0)}, 0},
		{"duplicate", Limits{}, []op{add("x", TypeFifo, 0), add("./x", TypeFifo, 0)}, 1},
		{"explicit dir twice", Limits{}, []op{add("d", TypeDir, 0), add("d/", TypeDir, 0)}, 1},
		{"file over implicit dir", Limits{}, []op{add("d/x", TypeFifo, 0), add("d", TypeFifo, 0)}, 1},
		{"parent is a file", Limits{}, []op{add("f", TypeFifo, 0), add("f/x", TypeFifo, 0)}, 1},
		{"parent is a link", Limits{}, []op{add("f", TypeFifo, 0), hardlink("l", "f"), add("l/x", TypeFifo, 0)}, 2},
		{"link over a file", Limits{}, []op{add("f", TypeFifo, 0), hardlink("f", "f")}, 1},
		{"link names the root", Limits{}, []op{hardlink("/", "f")}, 0},
		{"link escapes", Limits{}, []op{hardlink("l", "../f")}, 0},
		{"link to missing", Limits{}, []op{hardlink("l", "nope")}, 1},
		{"link to itself", Limits{}, []op{hardlink("l", "l")}, 1},
		{"link loop", Limits{}, []op{hardlink("a", "b"), hardlink("b", "c"), hardlink("c", "a")}, 3},
		{"link to dir", Limits{}, []op{add("d", TypeDir, 0), hardlink("l", "d")}, 2},
		{"link to the root", Limits{}, []op{hardlink("l", "/")}, 1},
		{"chunk for a dir", Limits{}, []op{add("d", TypeDir, 0), chunk("d", 0, 1)}, 1},
		{"chunk for missing", Limits{}, []op{chunk("nope", 0, 1)}, 0},
		{"chunk for a link", Limits{}, []op{add("f", TypeReg, 1), hardlink("l", "f"), chunk("l", 0, 1)}, 2},
		{"chunk gap", Limits{}, []op{add("f", TypeReg, 4), chunk("f", 1, 3)}, 1},
		{"chunk overlap", Limits{}, []op{add("f", TypeReg, 4), chunk("f", 0, 2), chunk("f", 1, 3)}, 2},
		{"chunk past the end", Limits{}, []op{add("f", TypeReg, 4), chunk("f", 0, 5)}, 1},
		{"empty chunk", Limits{}, []op{add("f", TypeReg, 4), chunk("f", 0, 0)}, 1},
		{"chunk does not cover", Limits{}, []op{add("f", TypeReg, 4), chunk("f", 0, 3)}, 2},
		{"file without chunks", Limits{}, []op{add("f", TypeReg, 4)}, 1},
		{"chunk without digest", Limits{}, []op{add("f", TypeReg, 4), rawChunk("f", Chunk{Size: 4, CompressedEnd: 1})}, 1},
		{"chunk with bad digest", Limits{}, []op{add("f", TypeReg, 4), rawChunk("f", Chunk{Size: 4, CompressedEnd: 1, Digest: "sha256:1"})}, 1},
		{"empty compressed range", Limits{}, []op{add("f", TypeReg, 4), rawChunk("f", Chunk{Size: 4, CompressedOffset: 5, CompressedEnd: 5, Digest: fuzzDigest})}, 1},
		{"negative compressed offset", Limits{}, []op{add("f", TypeReg, 4), rawChunk("f", Chunk{Size: 4, CompressedOffset: -1, CompressedEnd: 5, Digest: fuzzDigest})}, 1},
		{"negative inner offset", Limits{}, []op{add("f", TypeReg, 4), rawChunk("f", Chunk{Size: 4, CompressedEnd: 5, InnerOffset: -1, Digest: fuzzDigest})}, 1},
		{"past BlobEnd", Limits{BlobEnd: 15}, []op{add("f", TypeReg, 4), chunk("f", 0, 4)}, 1},
		{"max entries by files", Limits{MaxEntries: 3}, []op{add("a", TypeFifo, 0), add("b", TypeFifo, 0), add("c", TypeFifo, 0)}, 2},
		{"max entries by implicit dirs", Limits{MaxEntries: 3}, []op{add("a/b/c/d", TypeFifo, 0)}, 0},
		{"max entries by links", Limits{MaxEntries: 3}, []op{add("a", TypeFifo, 0), hardlink("b", "a"), hardlink("c", "a")}, 2},
		{"link chain into a loop", Limits{}, []op{add("f", TypeFifo, 0), hardlink("a", "b"), hardlink("b", "c"), hardlink("c", "b")}, 4},
		{"link chain to missing", Limits{}, []op{hardlink("a", "b"), hardlink("b", "c"), hardlink("c", "nope")}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBuilder(tt.lim)
			for i, o := range tt.ops {
				err := o(b)
				if i == tt.failAt {
					if !errors.Is(err, ErrInvalid) {
						t.Fatalf("op %d error = %v, want %v", i, err, ErrInvalid)
					}
					return
				}
				if err != nil {
					t.Fatalf("op %d: %v", i, err)
				}
			}
			if _, err := b.Build(t.Context()); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Build error = %v, want %v", err, ErrInvalid)
			}
		})
	}
}

func TestBuilderZeroChunk(t *testing.T) {
	b := NewBuilder(Limits{BlobEnd: 10})
	if err := b.Add(Entry{Name: "z", Type: TypeReg, Size: 100}); err != nil {
		t.Fatal(err)
	}
	// A zero chunk needs neither a compressed range nor a digest.
	if err := b.AddChunk("z", Chunk{Size: 100, Zero: true}); err != nil {
		t.Fatalf("AddChunk(zero) = %v", err)
	}
	if _, err := b.Build(t.Context()); err != nil {
		t.Fatal(err)
	}
}

func TestBuilderModeBits(t *testing.T) {
	b := NewBuilder(Limits{})
	if err := b.Add(Entry{Name: "x", Type: TypeFifo, Mode: 0o10644 | 0o4000}); err != nil {
		t.Fatal(err)
	}
	ix, err := b.Build(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := ix.Lookup("x"); e.Mode != 0o4644 {
		t.Errorf("Mode = %o, want 4644", e.Mode)
	}
}

// TestBuilderDeepName checks that a deep name cannot escape MaxEntries
// through the implicit directories it needs.
func TestBuilderDeepName(t *testing.T) {
	name := strings.Repeat("d/", 2000) + "f"
	b := NewBuilder(Limits{MaxEntries: 1000})
	if err := b.Add(Entry{Name: name, Type: TypeFifo}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Add(deep) error = %v, want %v", err, ErrInvalid)
	}
	b = NewBuilder(Limits{})
	if err := b.Add(Entry{Name: name, Type: TypeFifo}); err != nil {
		t.Fatal(err)
	}
	ix, err := b.Build(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ix.Len() != 2002 {
		t.Errorf("Len() = %d, want 2002", ix.Len())
	}
}

func TestValidateDigest(t *testing.T) {
	tests := []struct {
		d  string
		ok bool
	}{
		{string(fuzzDigest), true},
		{"sha256:" + strings.Repeat("a", 64), true},
		{"sha256:" + strings.Repeat("A", 64), false},
		{"sha256:" + strings.Repeat("a", 63), false},
		{"sha256:" + strings.Repeat("g", 64), false},
		{"sha512:" + strings.Repeat("0", 128), false}, // sha512 is not linked in
		{"md5:" + strings.Repeat("0", 32), false},
		{"", false},
	}
	for _, tt := range tests {
		if err := validateDigest(digest.Digest(tt.d)); (err == nil) != tt.ok {
			t.Errorf("validateDigest(%q) = %v, want ok %v", tt.d, err, tt.ok)
		}
		if err := digest.Digest(tt.d).Validate(); (err == nil) != tt.ok {
			t.Errorf("digest.Validate(%q) = %v disagrees", tt.d, err)
		}
	}
}

func TestParentDir(t *testing.T) {
	for in, want := range map[string]string{"a": "", "a/b": "a", "a/b/c": "a/b"} {
		if got := parentDir(in); got != want {
			t.Errorf("parentDir(%q) = %q, want %q", in, got, want)
		}
	}
}
