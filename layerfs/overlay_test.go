// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/stargz-store/stargz-store/internal/testutil"
)

// TestMountOverlay stacks two diff trees with the kernel's overlayfs, as
// containers/storage does, and checks that the upper layer's whiteouts
// hide lower files and its opaque directory hides lower content, both
// with trusted.* xattrs (root) and with userxattr (rootless).
func TestMountOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting overlayfs needs root")
	}
	testutil.CheckLeaks(t)
	ref := mustRef(t, "registry.example/overlay:1")
	lower := buildLayer(t, ref, buildTar(t,
		file("keep", 0o644, "k"), file("gone", 0o644, "g"),
		dir("dir/", 0o755), file("dir/old", 0o644, "o"), file("dir/other", 0o644, "x"),
		dir("sub/", 0o755), file("sub/file", 0o644, "f"),
	))
	upper := buildLayer(t, ref, buildTar(t,
		file(".wh.gone", 0o644, ""),
		dir("dir/", 0o755), file("dir/.wh..wh..opq", 0o644, ""), file("dir/new", 0o644, "n"),
		dir("sub/", 0o755), file("sub/added", 0o644, "a"),
	))
	src := newFakeSource()
	src.add(lower.open(t))
	src.add(upper.open(t))
	mnt := mountLayerFS(t, src, Options{})

	// Storage's l/<LID> symlinks; they also keep the digests' colons out
	// of the lowerdir option.
	links := t.TempDir()
	for name, tl := range map[string]testLayer{"upper": upper, "lower": lower} {
		diff := filepath.Join(mnt, ref.PathElem(), tl.desc.TOCDigest.String(), "diff")
		if err := os.Symlink(diff, filepath.Join(links, name)); err != nil {
			t.Fatal(err)
		}
	}
	lowerdir := "lowerdir=" + filepath.Join(links, "upper") + ":" + filepath.Join(links, "lower")
	for name, opts := range map[string]string{"trusted": lowerdir, "userxattr": lowerdir + ",userxattr"} {
		t.Run(name, func(t *testing.T) {
			merged := t.TempDir()
			if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
				t.Skipf("mount overlay %q: %v", opts, err)
			}
			t.Cleanup(func() {
				if err := unix.Unmount(merged, 0); err != nil {
					t.Errorf("unmount overlay: %v", err)
					unix.Unmount(merged, unix.MNT_DETACH)
				}
			})
			checkMerged(t, merged)
		})
	}
}

func checkMerged(t *testing.T, merged string) {
	t.Helper()
	for name, want := range map[string]string{"keep": "k", "dir/new": "n", "sub/file": "f", "sub/added": "a"} {
		if got, err := os.ReadFile(filepath.Join(merged, name)); err != nil || string(got) != want {
			t.Errorf("ReadFile(%s) = %q, %v, want %q", name, got, err, want)
		}
	}
	for _, name := range []string{"gone", "dir/old", "dir/other", ".wh.gone", "dir/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(merged, name)); errnoOf(err) != syscall.ENOENT {
			t.Errorf("Lstat(%s) = %v, want ENOENT (hidden by the upper layer)", name, err)
		}
	}
	for dir, want := range map[string][]string{"": {"dir", "keep", "sub"}, "dir": {"new"}, "sub": {"added", "file"}} {
		ents, err := os.ReadDir(filepath.Join(merged, dir))
		if err != nil {
			t.Errorf("ReadDir(%q): %v", dir, err)
			continue
		}
		var got []string
		for _, e := range ents {
			got = append(got, e.Name())
		}
		if !slices.Equal(got, want) {
			t.Errorf("ReadDir(%q) = %q, want %q", dir, got, want)
		}
	}
}
