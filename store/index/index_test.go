// SPDX-License-Identifier: Apache-2.0

package index

import (
	"slices"
	"testing"
)

// sample builds a small tree:
//
//	/            dir (explicit "./", mode 0700)
//	bin/         implicit
//	bin/ls       reg, 10 bytes in 2 chunks
//	bin/dir      hard link to bin/ls
//	etc/         dir
//	etc/sub/     dir
//	etc/link     symlink -> /etc/passwd
//	x            hard link to bin/dir (a chain)
func sample(t *testing.T) *Index {
	t.Helper()
	b := NewBuilder(Limits{BlobEnd: 100})
	steps := []error{
		b.Add(Entry{Name: "bin/ls", Type: TypeReg, Size: 10, Mode: 0o755}),
		b.AddChunk("bin/ls", Chunk{Offset: 0, Size: 4, CompressedOffset: 10, CompressedEnd: 20, Digest: fuzzDigest}),
		b.AddChunk("/bin/ls", Chunk{Offset: 4, Size: 6, CompressedOffset: 20, CompressedEnd: 30, Digest: fuzzDigest}),
		b.AddHardlink("bin/dir", "bin/ls"),
		b.Add(Entry{Name: "./", Type: TypeDir, Mode: 0o700}),
		b.Add(Entry{Name: "etc/", Type: TypeDir, Mode: 0o755, UID: 1}),
		b.Add(Entry{Name: "etc/sub", Type: TypeDir, Mode: 0o755}),
		b.Add(Entry{Name: "etc/link", Type: TypeSymlink, LinkName: "/etc/passwd"}),
		b.AddHardlink("x", "bin/dir"),
	}
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	ix, err := b.Build(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestIndexLookup(t *testing.T) {
	ix := sample(t)
	ls, _ := ix.Lookup("bin/ls")
	tests := []struct {
		name string
		want *Entry
	}{
		{"bin/ls", ls}, {"/bin/ls", ls}, {"./bin//ls/", ls}, {"bin/dir", ls}, {"x", ls},
		{"", ix.Root()}, {"/", ix.Root()}, {".", ix.Root()},
		{"bin/nope", nil}, {"../bin/ls", ls}, // Lookup cleans like a rooted path
	}
	for _, tt := range tests {
		got, ok := ix.Lookup(tt.name)
		if got != tt.want || ok != (tt.want != nil) {
			t.Errorf("Lookup(%q) = %v, %v; want %v", tt.name, got, ok, tt.want)
		}
	}
}

func TestIndexTree(t *testing.T) {
	ix := sample(t)
	root := ix.Root()
	if root.ID != 1 || root.Mode != 0o700 || root.Type != TypeDir {
		t.Errorf("Root() = %+v, want the explicit ./ entry with ID 1", root)
	}
	var names []string
	for _, d := range ix.Children(root) {
		names = append(names, d.Name)
	}
	if want := []string{"bin", "etc", "x"}; !slices.Equal(names, want) {
		t.Errorf("Children(root) = %q, want %q", names, want)
	}
	bin, _ := ix.Child(root, "bin")
	if bin == nil || bin.Mode != 0o755 || bin.Type != TypeDir {
		t.Fatalf("implicit bin = %+v", bin)
	}
	ls, ok := ix.Child(bin, "dir")
	if !ok || ls.Name != "bin/ls" {
		t.Errorf("Child(bin, dir) = %+v, %v", ls, ok)
	}
	if _, ok := ix.Child(bin, "zzz"); ok {
		t.Error("Child(bin, zzz) found something")
	}
	if _, ok := ix.Child(ls, "a"); ok {
		t.Error("Child of a file found something")
	}
	// Link counts: ls has three names; a dir has 2 + subdirectories.
	etc, _ := ix.Lookup("etc")
	for _, tt := range []struct {
		e    *Entry
		want int
	}{{ls, 3}, {root, 4}, {bin, 2}, {etc, 3}} {
		if tt.e.NumLink != tt.want {
			t.Errorf("%q: NumLink = %d, want %d", tt.e.Name, tt.e.NumLink, tt.want)
		}
	}
	if ix.Len() != 6 || len(ix.Entries()) != 6 {
		t.Errorf("Len() = %d, Entries() has %d, want 6", ix.Len(), len(ix.Entries()))
	}
	for i, e := range ix.Entries() {
		if e.ID != uint32(i+1) || ix.Entry(e.ID) != e {
			t.Errorf("Entries()[%d] has ID %d", i, e.ID)
		}
	}
	if ix.Entry(0) != nil || ix.Entry(7) != nil {
		t.Error("Entry() of an unknown ID is not nil")
	}
	link, _ := ix.Lookup("etc/link")
	if link.LinkName != "/etc/passwd" || link.Size != 0 {
		t.Errorf("symlink = %+v", link)
	}
}

func TestEntryChunkAt(t *testing.T) {
	ls, _ := sample(t).Lookup("bin/ls")
	tests := []struct {
		off      int64
		want     int64 // chunk offset, -1 for none
		wantSize int64
	}{{-1, -1, 0}, {0, 0, 4}, {3, 0, 4}, {4, 4, 6}, {9, 4, 6}, {10, -1, 0}, {1 << 62, -1, 0}}
	for _, tt := range tests {
		c, ok := ls.ChunkAt(tt.off)
		if ok != (tt.want >= 0) || (ok && (c.Offset != tt.want || c.Size != tt.wantSize)) {
			t.Errorf("ChunkAt(%d) = %+v, %v; want offset %d", tt.off, c, ok, tt.want)
		}
	}
	var empty Entry
	if _, ok := empty.ChunkAt(0); ok {
		t.Error("ChunkAt on an empty file found a chunk")
	}
}

func TestTypeString(t *testing.T) {
	for typ, want := range map[Type]string{TypeDir: "dir", TypeReg: "reg", TypeFifo: "fifo", 0: "invalid", 200: "invalid"} {
		if got := typ.String(); got != want {
			t.Errorf("Type(%d).String() = %q, want %q", typ, got, want)
		}
	}
}

func TestParseType(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Type
		ok   bool
	}{
		{"dir", TypeDir, true}, {"reg", TypeReg, true}, {"symlink", TypeSymlink, true},
		{"char", TypeChar, true}, {"block", TypeBlock, true}, {"fifo", TypeFifo, true},
		{"hardlink", 0, false}, {"chunk", 0, false}, {"invalid", 0, false}, {"", 0, false}, {"DIR", 0, false},
	} {
		if got, ok := ParseType(tt.in); got != tt.want || ok != tt.ok {
			t.Errorf("ParseType(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.ok)
		}
		if tt.ok && tt.want.String() != tt.in {
			t.Errorf("%v.String() = %q, want %q", tt.want, tt.want.String(), tt.in)
		}
	}
}
