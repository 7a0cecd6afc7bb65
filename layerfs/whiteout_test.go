// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/stargz-store/stargz-store/store/index"
)

// buildIndex builds an index of empty files, directories (names ending in
// "/") and hard links ("name=>target").
func buildIndex(t *testing.T, names ...string) *index.Index {
	t.Helper()
	b := index.NewBuilder(index.Limits{})
	for _, n := range names {
		var err error
		name, target, isLink := strings.Cut(n, "=>")
		switch {
		case strings.HasSuffix(n, "/"):
			err = b.Add(index.Entry{Name: n, Type: index.TypeDir, Mode: 0o755})
		case isLink:
			err = b.AddHardlink(name, target)
		default:
			err = b.Add(index.Entry{Name: n, Type: index.TypeReg, Mode: 0o644})
		}
		if err != nil {
			t.Fatalf("add %q: %v", n, err)
		}
	}
	ix, err := b.Build(t.Context())
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return ix
}

func names(ds []dirent) []string {
	var out []string
	for _, d := range ds {
		s := d.name
		if d.whiteout {
			s += "(wh)"
		}
		out = append(out, s)
	}
	return out
}

func mustDir(t *testing.T, ix *index.Index, name string) *index.Entry {
	t.Helper()
	e, ok := ix.Lookup(name)
	if !ok || e.Type != index.TypeDir {
		t.Fatalf("no directory %q", name)
	}
	return e
}

func TestPresentation(t *testing.T) {
	ix := buildIndex(t,
		".prefetch.landmark", ".no.prefetch.landmark", ".wh.gone", "kept", ".wh.kept",
		".wh..wh.plnk", ".wh.", "z", "a", "link=>a",
		"opq/", "opq/.wh..wh..opq", "opq/new",
		"sub/", "sub/.prefetch.landmark", "sub/.wh..wh.x", "sub/.wh.old",
	)
	tests := []struct {
		dir  string
		want []string
	}{
		// Landmarks are hidden only at the root; ".wh." alone, plnk and
		// a whiteout shadowed by a real name are not shown.
		{"", []string{"a", "gone(wh)", "kept", "link", "opq", "sub", "z"}},
		{"opq", []string{"new"}},
		{"sub", []string{".prefetch.landmark", "old(wh)"}},
	}
	for _, tt := range tests {
		t.Run("dir="+tt.dir, func(t *testing.T) {
			dir := mustDir(t, ix, tt.dir)
			got := names(listChildren(ix, dir))
			if !slices.Equal(got, tt.want) {
				t.Fatalf("listChildren(%q) = %q, want %q", tt.dir, got, tt.want)
			}
			// Lookup agrees with Readdir on every listed name...
			for _, d := range listChildren(ix, dir) {
				l, ok := lookupChild(ix, dir, d.name)
				if !ok || l != d {
					t.Errorf("lookupChild(%q, %q) = %+v, %v, want %+v", tt.dir, d.name, l, ok, d)
				}
			}
		})
	}
	// ...and finds nothing that is not listed.
	root := ix.Root()
	for _, name := range []string{".wh.gone", ".wh.kept", ".wh..wh.plnk", ".wh..wh..opq", ".prefetch.landmark",
		".no.prefetch.landmark", "", ".wh.", "missing", "plnk", ".wh..opq"} {
		if d, ok := lookupChild(ix, root, name); ok {
			t.Errorf("lookupChild(root, %q) = %+v, want not found", name, d)
		}
	}
	if a, l := mustLookup(t, ix, root, "a"), mustLookup(t, ix, root, "link"); a.e != l.e {
		t.Errorf("hard link resolves to entry %d, target to %d", l.e.ID, a.e.ID)
	}
	if d := mustLookup(t, ix, root, "gone"); !d.whiteout || d.e.Name != ".wh.gone" {
		t.Errorf("lookupChild(root, gone) = %+v, want the whiteout entry .wh.gone", d)
	}
}

func mustLookup(t *testing.T, ix *index.Index, dir *index.Entry, name string) dirent {
	t.Helper()
	d, ok := lookupChild(ix, dir, name)
	if !ok {
		t.Fatalf("lookupChild(%q) not found", name)
	}
	return d
}

func TestXattrs(t *testing.T) {
	b := index.NewBuilder(index.Limits{})
	for _, e := range []index.Entry{
		{Name: "opq", Type: index.TypeDir, Mode: 0o755, Xattrs: map[string][]byte{"user.a": []byte("1")}},
		{Name: "opq/.wh..wh..opq", Type: index.TypeReg},
		{Name: "plain", Type: index.TypeDir, Mode: 0o755},
		{Name: "f", Type: index.TypeReg, Xattrs: map[string][]byte{"security.capability": {1, 2, 3}, "user.b": []byte("two")}},
		{Name: "dup", Type: index.TypeDir, Xattrs: map[string][]byte{"trusted.overlay.opaque": []byte("y")}},
		{Name: "dup/.wh..wh..opq", Type: index.TypeReg},
	} {
		if err := b.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	ix, err := b.Build(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string) *index.Entry { e, _ := ix.Lookup(name); return e }
	tests := []struct {
		entry     string
		wantNames []string
	}{
		{"opq", []string{"trusted.overlay.opaque", "user.a", "user.overlay.opaque"}},
		{"plain", []string{}},
		{"f", []string{"security.capability", "user.b"}},
		{"dup", []string{"trusted.overlay.opaque", "user.overlay.opaque"}},
	}
	for _, tt := range tests {
		if got := xattrNames(ix, get(tt.entry)); !slices.Equal(got, tt.wantNames) {
			t.Errorf("xattrNames(%s) = %q, want %q", tt.entry, got, tt.wantNames)
		}
	}
	for _, attr := range opaqueXattrs {
		if v, ok := xattr(ix, get("opq"), attr); !ok || string(v) != "y" {
			t.Errorf("xattr(opq, %s) = %q, %v, want y", attr, v, ok)
		}
		if _, ok := xattr(ix, get("plain"), attr); ok {
			t.Errorf("xattr(plain, %s) found, want ENODATA", attr)
		}
	}
	if v, ok := xattr(ix, get("f"), "security.capability"); !ok || !slices.Equal(v, []byte{1, 2, 3}) {
		t.Errorf("xattr(f, security.capability) = %v, %v", v, ok)
	}
}

func TestCopyXattr(t *testing.T) {
	v := []byte("value")
	tests := []struct {
		name      string
		dest      int
		wantN     uint32
		wantErrno syscall.Errno
	}{
		{"size query", 0, 5, 0},
		{"too small", 3, 5, syscall.ERANGE},
		{"exact", 5, 5, 0},
		{"larger", 64, 5, 0},
	}
	for _, tt := range tests {
		dest := make([]byte, tt.dest)
		n, errno := copyXattr(dest, v)
		if n != tt.wantN || errno != tt.wantErrno {
			t.Errorf("%s: copyXattr(%d bytes) = %d, %v, want %d, %v", tt.name, tt.dest, n, errno, tt.wantN, tt.wantErrno)
		}
		if errno == 0 && tt.dest > 0 && string(dest[:n]) != "value" {
			t.Errorf("%s: copied %q", tt.name, dest[:n])
		}
	}
	if got := string(xattrList([]string{"a.b", "c"})); got != "a.b\x00c\x00" {
		t.Errorf("xattrList = %q", got)
	}
}
