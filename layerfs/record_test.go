// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"archive/tar"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/internal/testutil"
)

// allAccesses is a Recorder that keeps every access, and passes it on to
// a FileLog.
type allAccesses struct {
	FileLog
	// mu guards the field below.
	mu  sync.Mutex
	got []Access
}

func (r *allAccesses) Record(a Access) {
	r.mu.Lock()
	r.got = append(r.got, a)
	r.mu.Unlock()
	r.FileLog.Record(a)
}

func (r *allAccesses) accesses() []Access {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func TestMountRecorder(t *testing.T) {
	testutil.CheckLeaks(t)
	ref := mustRef(t, "registry.example/stargz/rec:v1")
	tl := buildLayer(t, ref, buildTar(t,
		dir("etc/", 0o755),
		file("etc/a", 0o644, "aaaa"),
		file("etc/b", 0o644, "bb"),
		file("etc/c", 0o644, "c"),
		file("empty", 0o644, ""),
		file(".wh.gone", 0o644, ""),
		tarEntry{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: "etc/a"}},
		tarEntry{Header: tar.Header{Typeflag: tar.TypeLink, Name: "hard", Linkname: "etc/b"}},
	))
	src := newFakeSource()
	src.add(tl.open(t))
	rec := &allAccesses{}
	mnt := mountLayerFS(t, src, Options{Recorder: rec})
	diff := filepath.Join(mnt, ref.PathElem(), tl.desc.Digest.String(), "diff")

	// A stat of a directory and of a file: no content needed.
	for _, p := range []string{"etc", "etc/a"} {
		if _, err := os.Stat(filepath.Join(diff, p)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Lstat(filepath.Join(diff, "gone")); err != nil { // a whiteout
		t.Fatal(err)
	}
	// Reads: c, then a through a symlink, b through a hard link, an empty
	// file, c again, a again.
	for _, p := range []string{"etc/c", "link", "hard", "empty", "etc/c", "etc/a"} {
		if _, err := os.ReadFile(filepath.Join(diff, p)); err != nil {
			t.Fatal(err)
		}
	}

	want := []RecordedFile{
		{Layer: tl.desc.Digest, Path: "etc/c", Size: 1},
		{Layer: tl.desc.Digest, Path: "etc/a", Size: 4},
		{Layer: tl.desc.Digest, Path: "etc/b", Size: 2},
		{Layer: tl.desc.Digest, Path: "empty", Size: 0},
	}
	if got := rec.Files(); !slices.Equal(got, want) {
		t.Errorf("FileLog.Files() = %v, want %v", got, want)
	}

	ops := map[string][]Op{}
	for _, a := range rec.accesses() {
		if a.Layer != tl.desc.Digest {
			t.Errorf("access %v: layer %s, want the blob digest %s", a, a.Layer, tl.desc.Digest)
		}
		ops[a.Path] = append(ops[a.Path], a.Op)
	}
	for _, p := range []string{"etc", "link", "hard", "gone", ".wh.gone", ""} {
		if len(ops[p]) > 0 {
			t.Errorf("accesses of %q = %v, want none (not a regular file, or not its content's name)", p, ops[p])
		}
	}
	// etc/a: looked up by the stat first, then opened and read.
	if got := ops["etc/a"]; len(got) < 3 || got[0] != OpLookup || !slices.Contains(got, OpOpen) || !slices.Contains(got, OpRead) {
		t.Errorf("ops on etc/a = %v, want lookup first, then open and read", got)
	}
	if got := ops["etc/c"]; len(got) < 2 || slices.Index(got, OpOpen) > slices.Index(got, OpRead) {
		t.Errorf("ops on etc/c = %v, want open before read", got)
	}
}

func TestFileLog(t *testing.T) {
	l1, l2 := digest.FromString("layer 1"), digest.FromString("layer 2")
	tests := []struct {
		name string
		in   []Access
		want []RecordedFile
	}{
		{name: "empty"},
		{
			name: "first open or read wins, lookups ignored",
			in: []Access{
				{Layer: l1, Path: "a", Size: 1, Op: OpLookup},
				{Layer: l1, Path: "b", Size: 2, Op: OpRead},
				{Layer: l1, Path: "a", Size: 1, Op: OpOpen},
				{Layer: l1, Path: "b", Size: 2, Op: OpOpen},
				{Layer: l1, Path: "a", Size: 1, Op: OpRead},
				{Layer: l1, Path: "c", Size: 3, Op: OpLookup},
			},
			want: []RecordedFile{{l1, "b", 2}, {l1, "a", 1}},
		},
		{
			name: "same path in two layers is two files",
			in: []Access{
				{Layer: l2, Path: "a", Size: 5, Op: OpOpen},
				{Layer: l1, Path: "a", Size: 1, Op: OpOpen},
				{Layer: l2, Path: "a", Size: 5, Op: OpRead},
			},
			want: []RecordedFile{{l2, "a", 5}, {l1, "a", 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f FileLog
			for _, a := range tt.in {
				f.Record(a)
			}
			if got := f.Files(); !slices.Equal(got, tt.want) {
				t.Errorf("Files() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFileLogConcurrent(t *testing.T) {
	var f FileLog
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 100 {
				f.Record(Access{Path: string(rune('a' + j%26)), Op: Op(1 + (i+j)%3)})
			}
		})
	}
	wg.Wait()
	if got := len(f.Files()); got != 26 {
		t.Errorf("len(Files()) = %d, want 26", got)
	}
}
