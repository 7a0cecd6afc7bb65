// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/stargz-store/stargz-store/internal/testutil"
)

// fileCap is a valid security.capability value (VFS_CAP_REVISION_2,
// effective, CAP_NET_BIND_SERVICE permitted); the kernel refuses to return
// malformed ones.
const fileCap = "\x01\x00\x00\x02\x00\x04\x00\x00" + "\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// posixTar is a layer with one of everything a diff tree must present.
func posixTar(t testing.TB, big []byte) []byte {
	t.Helper()
	owned := func(e tarEntry, uid, gid int) tarEntry { e.Uid, e.Gid = uid, gid; return e }
	special := func(typ byte, name string, mode int64, major, minor int64) tarEntry {
		return tarEntry{Header: tar.Header{Typeflag: typ, Name: name, Mode: mode, Devmajor: major, Devminor: minor}}
	}
	xattrs := file("xattr", 0o644, "x")
	xattrs.PAXRecords = map[string]string{
		"SCHILY.xattr.user.foo":            "bar",
		"SCHILY.xattr.security.capability": fileCap,
	}
	return buildTar(t,
		dir("./", 0o755),
		dir("bin/", 0o755),
		file("bin/su", 0o4755, "#!su"),
		file("bin/sg", 0o2711, "#!sg"),
		dir("tmp/", 0o1777),
		dir("etc/", 0o755),
		file("etc/passwd", 0o644, "root:x:0:0::/root:/bin/sh\n"),
		tarEntry{Header: tar.Header{Typeflag: tar.TypeLink, Name: "hard", Linkname: "etc/passwd"}},
		tarEntry{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: "etc/passwd"}},
		owned(dir("home/", 0o755), 0, 0),
		owned(dir("home/user/", 0o700), 1000, 1000),
		owned(file("home/user/notes", 0o600, "secret"), 1000, 100),
		file("empty", 0o644, ""),
		file("big", 0o644, string(big)),
		dir("dev/", 0o755),
		special(tar.TypeChar, "dev/null", 0o666, 1, 3),
		special(tar.TypeBlock, "dev/sda", 0o660, 8, 1),
		special(tar.TypeFifo, "fifo", 0o644, 0, 0),
		xattrs,
		file(".wh.deleted", 0o644, ""),
		file(".wh..wh.plnk", 0o644, ""),
		file("exists", 0o644, "real"),
		file(".wh.exists", 0o644, ""),
		dir("opq/", 0o755),
		file("opq/.wh..wh..opq", 0o644, ""),
		file("opq/new", 0o644, "new"),
	)
}

type posixFixture struct {
	diff string
	big  []byte
	l    uint32 // layer ID
}

func newPosixFixture(t *testing.T) posixFixture {
	t.Helper()
	testutil.CheckLeaks(t)
	big := make([]byte, 300<<10+123)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range big {
		big[i] = byte(rng.UintN(256))
	}
	ref := mustRef(t, "registry.example/posix:1")
	tl := buildLayer(t, ref, posixTar(t, big))
	src := newFakeSource()
	l := tl.open(t)
	src.add(l)
	mnt := mountLayerFS(t, src, Options{})
	return posixFixture{diff: filepath.Join(mnt, ref.PathElem(), tl.desc.TOCDigest.String(), "diff"), big: big, l: l.ID()}
}

func lstat(t *testing.T, p string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatalf("Lstat(%s): %v", p, err)
	}
	return st
}

func TestPosixAttributes(t *testing.T) {
	f := newPosixFixture(t)
	tests := []struct {
		path       string
		mode       uint32
		uid, gid   uint32
		size       int64
		nlink      uint64
		rdev       uint64
		checkNlink bool
	}{
		{path: "", mode: unix.S_IFDIR | 0o755},
		{path: "bin/su", mode: unix.S_IFREG | 0o4755, size: 4},
		{path: "bin/sg", mode: unix.S_IFREG | 0o2711, size: 4},
		{path: "tmp", mode: unix.S_IFDIR | 0o1777},
		{path: "etc/passwd", mode: unix.S_IFREG | 0o644, size: 26, nlink: 2, checkNlink: true},
		{path: "hard", mode: unix.S_IFREG | 0o644, size: 26, nlink: 2, checkNlink: true},
		{path: "link", mode: unix.S_IFLNK | 0o777, size: int64(len("etc/passwd"))},
		{path: "home/user", mode: unix.S_IFDIR | 0o700, uid: 1000, gid: 1000},
		{path: "home/user/notes", mode: unix.S_IFREG | 0o600, uid: 1000, gid: 100, size: 6, nlink: 1, checkNlink: true},
		{path: "empty", mode: unix.S_IFREG | 0o644},
		{path: "big", mode: unix.S_IFREG | 0o644, size: int64(len(f.big))},
		{path: "dev/null", mode: unix.S_IFCHR | 0o666, rdev: unix.Mkdev(1, 3)},
		{path: "dev/sda", mode: unix.S_IFBLK | 0o660, rdev: unix.Mkdev(8, 1)},
		{path: "fifo", mode: unix.S_IFIFO | 0o644},
		{path: "deleted", mode: unix.S_IFCHR, rdev: 0, nlink: 1, checkNlink: true},
		{path: "exists", mode: unix.S_IFREG | 0o644, size: 4},
		{path: "opq", mode: unix.S_IFDIR | 0o755},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			st := lstat(t, filepath.Join(f.diff, tt.path))
			if st.Mode != tt.mode {
				t.Errorf("mode = %#o, want %#o", st.Mode, tt.mode)
			}
			if st.Uid != tt.uid || st.Gid != tt.gid {
				t.Errorf("owner = %d:%d, want %d:%d", st.Uid, st.Gid, tt.uid, tt.gid)
			}
			if st.Size != tt.size {
				t.Errorf("size = %d, want %d", st.Size, tt.size)
			}
			if st.Rdev != tt.rdev {
				t.Errorf("rdev = %#x, want %#x", st.Rdev, tt.rdev)
			}
			if tt.checkNlink && st.Nlink != tt.nlink {
				t.Errorf("nlink = %d, want %d", st.Nlink, tt.nlink)
			}
			if st.Mtim.Sec != testModTime.Unix() {
				t.Errorf("mtime = %d, want %d", st.Mtim.Sec, testModTime.Unix())
			}
			if st.Ino>>32 != uint64(f.l) {
				t.Errorf("ino %#x does not carry layer ID %d", st.Ino, f.l)
			}
			if wantBlocks := (st.Size + 511) / 512; st.Blocks != wantBlocks {
				t.Errorf("blocks = %d, want %d", st.Blocks, wantBlocks)
			}
		})
	}
}

func TestPosixHardLink(t *testing.T) {
	f := newPosixFixture(t)
	a, b := lstat(t, filepath.Join(f.diff, "etc/passwd")), lstat(t, filepath.Join(f.diff, "hard"))
	if a.Ino != b.Ino || a.Nlink != 2 || b.Nlink != 2 {
		t.Errorf("etc/passwd ino %d nlink %d, hard ino %d nlink %d; want one inode with nlink 2", a.Ino, a.Nlink, b.Ino, b.Nlink)
	}
	got, err := os.ReadFile(filepath.Join(f.diff, "hard"))
	if err != nil || string(got) != "root:x:0:0::/root:/bin/sh\n" {
		t.Errorf("ReadFile(hard) = %q, %v", got, err)
	}
}

func TestPosixReaddir(t *testing.T) {
	f := newPosixFixture(t)
	tests := []struct {
		dir  string
		want []string
	}{
		// No landmark, no .wh. names; the whiteout shows as "deleted".
		{"", []string{"big", "bin", "deleted", "dev", "empty", "etc", "exists", "fifo", "hard", "home", "link", "opq", "tmp", "xattr"}},
		{"opq", []string{"new"}},
		{"dev", []string{"null", "sda"}},
	}
	for _, tt := range tests {
		ents, err := os.ReadDir(filepath.Join(f.diff, tt.dir))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range ents {
			got = append(got, e.Name())
			// The type Readdir gives agrees with Lstat.
			fi, err := os.Lstat(filepath.Join(f.diff, tt.dir, e.Name()))
			if err != nil || fi.Mode().Type() != e.Type() {
				t.Errorf("%s/%s: readdir type %v, lstat %v, %v", tt.dir, e.Name(), e.Type(), fi, err)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("ReadDir(%q) = %q, want %q", tt.dir, got, tt.want)
		}
	}
	// d_ino agrees with st_ino, hard links and whiteouts included.
	inos := direntInos(t, f.diff)
	if len(inos) != 14+2 {
		t.Errorf("getdents64 gave %d names, want 16 with . and ..", len(inos))
	}
	if inos["."] != lstat(t, f.diff).Ino || inos[".."] != inos["."] {
		t.Errorf("diff root: d_ino of . %#x and .. %#x, want %#x", inos["."], inos[".."], lstat(t, f.diff).Ino)
	}
	if sub := direntInos(t, filepath.Join(f.diff, "home/user")); sub[".."] != lstat(t, filepath.Join(f.diff, "home")).Ino {
		t.Errorf("home/user: d_ino of .. is %#x, want that of home", sub[".."])
	}
	for name, ino := range inos {
		if name == "." || name == ".." {
			continue
		}
		if st := lstat(t, filepath.Join(f.diff, name)); st.Ino != ino {
			t.Errorf("%s: d_ino %#x, st_ino %#x", name, ino, st.Ino)
		}
	}
	for _, name := range []string{".no.prefetch.landmark", ".prefetch.landmark", ".wh.deleted", ".wh..wh.plnk", "opq/.wh..wh..opq", "stargz.index.json"} {
		if _, err := os.Lstat(filepath.Join(f.diff, name)); errnoOf(err) != syscall.ENOENT {
			t.Errorf("Lstat(%s) = %v, want ENOENT", name, err)
		}
	}
}

// direntInos reads dir with getdents64 and returns each name's d_ino.
func direntInos(t *testing.T, dir string) map[string]uint64 {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	out := map[string]uint64{}
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return out
		}
		for b := buf[:n]; len(b) > 0; {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
			reclen := int(binary.NativeEndian.Uint16(b[16:18]))
			name, _, _ := bytes.Cut(b[19:reclen], []byte{0})
			out[string(name)] = binary.NativeEndian.Uint64(b[0:8])
			b = b[reclen:]
		}
	}
}

func TestPosixRead(t *testing.T) {
	f := newPosixFixture(t)
	for name, want := range map[string]string{"etc/passwd": "root:x:0:0::/root:/bin/sh\n", "empty": "", "opq/new": "new", "exists": "real"} {
		if got, err := os.ReadFile(filepath.Join(f.diff, name)); err != nil || string(got) != want {
			t.Errorf("ReadFile(%s) = %q, %v, want %q", name, got, err, want)
		}
	}
	got, err := os.ReadFile(filepath.Join(f.diff, "big"))
	if err != nil || !bytes.Equal(got, f.big) {
		t.Fatalf("ReadFile(big): %d bytes, %v; want %d", len(got), err, len(f.big))
	}
	if target, err := os.Readlink(filepath.Join(f.diff, "link")); err != nil || target != "etc/passwd" {
		t.Errorf("Readlink(link) = %q, %v", target, err)
	}
}

// TestPosixParallelRead reads one multi-chunk file at random offsets from
// several goroutines and file handles.
func TestPosixParallelRead(t *testing.T) {
	f := newPosixFixture(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			fh, err := os.Open(filepath.Join(f.diff, "big"))
			if err != nil {
				errs <- err
				return
			}
			defer fh.Close()
			rng := rand.New(rand.NewPCG(uint64(g), 5))
			for range 40 {
				off := rng.IntN(len(f.big))
				n := min(rng.IntN(150000)+1, len(f.big)-off)
				buf := make([]byte, n)
				k, err := fh.ReadAt(buf, int64(off))
				if err != nil && !errors.Is(err, io.EOF) || k != n || !bytes.Equal(buf, f.big[off:off+n]) {
					errs <- errors.New("wrong bytes at random offset")
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestPosixXattrs(t *testing.T) {
	f := newPosixFixture(t)
	get := func(path, name string) (string, error) {
		buf := make([]byte, 256)
		n, err := unix.Lgetxattr(filepath.Join(f.diff, path), name, buf)
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	tests := []struct {
		path, name, want string
		wantErr          error
	}{
		{"xattr", "user.foo", "bar", nil},
		{"xattr", "security.capability", fileCap, nil},
		{"xattr", "user.missing", "", unix.ENODATA},
		{"opq", "trusted.overlay.opaque", "y", nil},
		{"opq", "user.overlay.opaque", "y", nil},
		{"etc", "trusted.overlay.opaque", "", unix.ENODATA},
		{"deleted", "user.foo", "", unix.ENODATA},
	}
	for _, tt := range tests {
		got, err := get(tt.path, tt.name)
		if got != tt.want || err != tt.wantErr {
			t.Errorf("Lgetxattr(%s, %s) = %q, %v, want %q, %v", tt.path, tt.name, got, err, tt.want, tt.wantErr)
		}
	}
	// Size query, then ERANGE for a short buffer.
	p := filepath.Join(f.diff, "xattr")
	if n, err := unix.Lgetxattr(p, "user.foo", nil); n != 3 || err != nil {
		t.Errorf("Lgetxattr(size query) = %d, %v, want 3", n, err)
	}
	if _, err := unix.Lgetxattr(p, "user.foo", make([]byte, 2)); err != unix.ERANGE {
		t.Errorf("Lgetxattr(short buffer) = %v, want ERANGE", err)
	}
	for path, want := range map[string][]string{
		"xattr": {"security.capability", "user.foo"},
		"opq":   {"trusted.overlay.opaque", "user.overlay.opaque"},
		"etc":   nil,
	} {
		buf := make([]byte, 1024)
		n, err := unix.Llistxattr(filepath.Join(f.diff, path), buf)
		if err != nil {
			t.Errorf("Llistxattr(%s): %v", path, err)
			continue
		}
		var got []string
		for s := range bytes.SplitSeq(buf[:n], []byte{0}) {
			if len(s) > 0 {
				got = append(got, string(s))
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("Llistxattr(%s) = %q, want %q", path, got, want)
		}
	}
}

func TestPosixAccess(t *testing.T) {
	f := newPosixFixture(t)
	tests := []struct {
		path string
		mode uint32
		want error
	}{
		{"etc/passwd", unix.F_OK, nil},
		{"etc/passwd", unix.R_OK, nil},
		{"etc/passwd", unix.X_OK, unix.EACCES},
		{"etc/passwd", unix.W_OK, unix.EROFS},
		{"bin/su", unix.X_OK, nil},
		{"home/user", unix.R_OK | unix.X_OK, nil},
	}
	for _, tt := range tests {
		if err := unix.Access(filepath.Join(f.diff, tt.path), tt.mode); err != tt.want {
			t.Errorf("access(%s, %d) = %v, want %v", tt.path, tt.mode, err, tt.want)
		}
	}
	// chdir asks FUSE_ACCESS too. t.Chdir goes back before the unmount.
	t.Chdir(filepath.Join(f.diff, "home/user"))
}

func TestPosixReadOnly(t *testing.T) {
	f := newPosixFixture(t)
	p := func(s string) string { return filepath.Join(f.diff, s) }
	ops := map[string]func() error{
		"mkdir":    func() error { return os.Mkdir(p("newdir"), 0o755) },
		"create":   func() error { _, err := os.Create(p("newfile")); return err },
		"open rw":  func() error { _, err := os.OpenFile(p("etc/passwd"), os.O_RDWR, 0); return err },
		"truncate": func() error { return os.Truncate(p("etc/passwd"), 0) },
		"chmod":    func() error { return os.Chmod(p("etc/passwd"), 0o600) },
		"chown":    func() error { return os.Lchown(p("etc/passwd"), 1, 1) },
		"remove":   func() error { return os.Remove(p("etc/passwd")) },
		"rmdir":    func() error { return os.Remove(p("tmp")) },
		"rename":   func() error { return os.Rename(p("etc/passwd"), p("etc/x")) },
		"symlink":  func() error { return os.Symlink("x", p("newlink")) },
		"link":     func() error { return os.Link(p("etc/passwd"), p("newhard")) },
		"mknod":    func() error { return unix.Mknod(p("newfifo"), unix.S_IFIFO|0o644, 0) },
		"setxattr": func() error { return unix.Lsetxattr(p("etc"), "user.x", []byte("1"), 0) },
		"rmxattr":  func() error { return unix.Lremovexattr(p("xattr"), "user.foo") },
		"utimes":   func() error { return unix.UtimesNano(p("etc/passwd"), make([]unix.Timespec, 2)) },
		"root mkdir": func() error {
			return os.Mkdir(filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(f.diff))), "x"), 0o755)
		},
	}
	for name, op := range ops {
		if err := op(); errnoOf(err) != syscall.EROFS {
			t.Errorf("%s = %v, want EROFS", name, err)
		}
	}
}
