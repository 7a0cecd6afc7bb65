// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// These tests try the mount as another user (uid 65534) from a child
// process: a copy of this test binary that runs callerOps instead of the
// tests (see TestMain).

// callerOpsEnv, when set, makes the test binary run the operations it
// lists, one "op path" per line, and print one result line each: the
// errno number, and for reads the SHA-256 of what was read.
const callerOpsEnv = "LAYERFS_CALLER_OPS"

// otherUID is the user the child runs as (nobody on Debian).
const otherUID = 65534

func TestMain(m *testing.M) {
	if ops, ok := os.LookupEnv(callerOpsEnv); ok {
		for _, line := range strings.Split(strings.TrimSpace(ops), "\n") {
			op, path, _ := strings.Cut(line, " ")
			fmt.Println(runCallerOp(op, path))
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runCallerOp does op on path (or on fd 3, inherited) and describes the
// result.
func runCallerOp(op, path string) string {
	var err error
	switch op {
	case "stat":
		var st unix.Stat_t
		err = unix.Lstat(path, &st)
	case "readdir":
		err = readdirAll(path)
	case "open":
		var fd int
		if fd, err = unix.Open(path, unix.O_RDONLY, 0); err == nil {
			unix.Close(fd)
		}
	case "exec":
		err = exec.Command(path).Run()
	case "readlink":
		_, err = os.Readlink(path)
	case "getxattr":
		// user.*: the kernel answers trusted.* to others without asking.
		_, err = unix.Lgetxattr(path, "user.overlay.opaque", make([]byte, 64))
		if err == unix.ENODATA {
			err = nil
		}
	case "listxattr":
		_, err = unix.Llistxattr(path, make([]byte, 4096))
	case "access":
		err = unix.Access(path, unix.F_OK)
	case "statfs":
		var st unix.Statfs_t
		err = unix.Statfs(path, &st)
	case "create":
		var fd int
		if fd, err = unix.Open(path, unix.O_CREAT|unix.O_WRONLY, 0o644); err == nil {
			unix.Close(fd)
		}
	case "rmdir":
		err = unix.Rmdir(path)
	case "mmapfd", "preadfd":
		size, _ := strconv.Atoi(path)
		return readFd3(op == "mmapfd", size)
	default:
		err = fmt.Errorf("unknown op %q", op)
	}
	return errnoString(err)
}

func readdirAll(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	buf := make([]byte, 8192)
	for {
		n, err := unix.Getdents(fd, buf)
		if n <= 0 || err != nil {
			return err
		}
	}
}

// readFd3 reads size bytes of the file open on fd 3, through a shared
// mapping (page faults) or pread, and returns "0 <sha256>". It never
// stats the file: a stat by another user is refused (GETATTR is checked)
// once a read made the kernel drop the cached atime.
func readFd3(mapped bool, size int) string {
	var data []byte
	if mapped {
		m, err := unix.Mmap(3, 0, size, unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return errnoString(err)
		}
		defer unix.Munmap(m)
		data = m // every page is faulted in by the hash below
	} else {
		data = make([]byte, size)
		if _, err := unix.Pread(3, data, 0); err != nil {
			return errnoString(err)
		}
	}
	sum := sha256.Sum256(data)
	return "0 " + hex.EncodeToString(sum[:])
}

// errnoString is the errno of err as a number, 0 for nil.
func errnoString(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil:
		return "0"
	case errors.As(err, &errno):
		return strconv.Itoa(int(errno))
	}
	return "error: " + err.Error()
}

// callerOp is one operation of the child and the result wanted.
type callerOp struct {
	op, path string
	want     syscall.Errno
}

// runAs runs ops in a child as uid (and the same gid), with fd as its
// fd 3 if not nil, and returns its result lines. Root's operations run in
// a child too: an exec from the serving process can deadlock it (the
// forking thread keeps its P until the new program, read through the
// mount, starts, and a garbage collection needs every P).
func runAs(t *testing.T, bin string, uid uint32, ops []callerOp, fd *os.File) []string {
	t.Helper()
	var list strings.Builder
	for _, o := range ops {
		fmt.Fprintf(&list, "%s %s\n", o.op, o.path)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), callerOpsEnv+"="+list.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	if fd != nil {
		cmd.ExtraFiles = []*os.File{fd}
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child as uid %d: %v (output %q)", uid, err, out)
	}
	var lines []string
	for sc := bufio.NewScanner(bytes.NewReader(out)); sc.Scan(); {
		lines = append(lines, sc.Text())
	}
	if len(lines) != len(ops) {
		t.Fatalf("child printed %d results for %d operations: %q", len(lines), len(ops), out)
	}
	return lines
}

// checkAs runs ops as uid and checks every errno.
func checkAs(t *testing.T, bin string, uid uint32, ops []callerOp) {
	t.Helper()
	for i, got := range runAs(t, bin, uid, ops, nil) {
		if want := strconv.Itoa(int(ops[i].want)); got != want {
			t.Errorf("%s %s as uid %d = %s, want %d (%v)", ops[i].op, ops[i].path, uid, got, ops[i].want, ops[i].want)
		}
	}
}

// callerFixture is a mounted layer whose mount and child binary other
// users can reach, as if the mount's parent had been opened by mistake.
type callerFixture struct {
	alsFixture
	bin                               string // the child: a copy of this test binary
	diff, hello, prog, link, big, etc string
	bigData                           []byte
}

func newCallerFixture(t *testing.T, opts Options) callerFixture {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a child as another user")
	}
	big := bytes.Repeat([]byte("page-faulted by another user\n"), 10000)
	ref := mustRef(t, "registry.example/stargz/callers:v1")
	tl := buildLayer(t, ref, buildTar(t,
		dir("bin/", 0o755), file("bin/prog", 0o755, "#!/bin/sh\necho ran\n"),
		dir("etc/", 0o755), file("etc/hello", 0o644, "hello\n"), file("big", 0o644, string(big)),
		tarEntry{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: "link", Linkname: "etc/hello", Mode: 0o777}}))
	src := newFakeSource()
	l := tl.open(t)
	src.add(l)
	mnt := mountLayerFS(t, src, opts)
	f := callerFixture{alsFixture: alsFixture{src: src, mnt: mnt, tl: tl, l: l, refEl: filepath.Join(mnt, ref.PathElem())}, bigData: big}
	f.genB = filepath.Join(f.refEl, tl.desc.TOCDigest.String())
	f.diff = filepath.Join(f.genB, diffDir)
	f.hello, f.prog, f.link, f.big, f.etc = filepath.Join(f.diff, "etc/hello"), filepath.Join(f.diff, "bin/prog"),
		filepath.Join(f.diff, "link"), filepath.Join(f.diff, "big"), filepath.Join(f.diff, "etc")
	f.bin = copyTestBinary(t)
	// t.TempDir's parent is 0700: open it, and the mount is reachable.
	for _, d := range []string{filepath.Dir(mnt), filepath.Dir(f.bin), filepath.Dir(filepath.Dir(f.bin))} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// copyTestBinary copies the running test binary where other users can run
// it (go test builds it in a private directory).
func copyTestBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	bin := filepath.Join(t.TempDir(), "child")
	out, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}

// rootCanUse checks that root gets what the other user is refused:
// stat, access, list, open, exec, readlink, xattrs, statfs.
func (f callerFixture) rootCanUse(t *testing.T) {
	t.Helper()
	checkAs(t, f.bin, 0, []callerOp{
		{"stat", f.hello, 0}, {"access", f.mnt, 0}, {"readdir", f.diff, 0}, {"open", f.hello, 0},
		{"exec", f.prog, 0}, {"readlink", f.link, 0}, {"getxattr", f.etc, 0}, {"listxattr", f.etc, 0},
		{"statfs", f.mnt, 0},
	})
}

// checkOtherMaps opens big as root and hands the descriptor to the other
// user, whose page faults on a mapping of it, and preads, must be served:
// that is how a container process running as another user reads a
// library or program that overlayfs opened for it.
func (f callerFixture) checkOtherMaps(t *testing.T, bin string) {
	t.Helper()
	fh, err := os.Open(f.big)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sum := sha256.Sum256(f.bigData)
	want := "0 " + hex.EncodeToString(sum[:])
	size := strconv.Itoa(len(f.bigData))
	got := runAs(t, bin, otherUID, []callerOp{{op: "mmapfd", path: size}, {op: "preadfd", path: size}}, fh)
	for i, op := range []string{"page faults on a mapping", "pread"} {
		if got[i] != want {
			t.Errorf("%s of a file root opened, as uid %d = %q, want %q", op, otherUID, got[i], want)
		}
	}
}

// With allow_other the kernel lets every user's requests through, and
// callerGate alone refuses them.
func TestMountCallerGateRefusesOtherUsers(t *testing.T) {
	f := newCallerFixture(t, Options{allowOther: true})
	eacces := syscall.EACCES
	// Nothing is cached yet: every request reaches the server.
	checkAs(t, f.bin, otherUID, []callerOp{
		{"stat", f.refEl, eacces}, {"stat", f.hello, eacces}, {"readdir", f.mnt, eacces},
		{"open", f.hello, eacces}, {"exec", f.prog, eacces}, {"readlink", f.link, eacces},
		{"getxattr", f.mnt, eacces}, {"listxattr", f.mnt, eacces}, {"access", f.mnt, eacces},
		{"statfs", f.mnt, eacces}, {"create", filepath.Join(f.genB, useFile), eacces},
	})
	f.rootCanUse(t)
	// Root's lookups are cached now, so the other user's path walks get
	// through the kernel: the requests themselves are refused.
	checkAs(t, f.bin, otherUID, []callerOp{
		{"readdir", f.diff, eacces}, {"open", f.hello, eacces}, {"exec", f.prog, eacces},
		{"getxattr", f.etc, eacces}, {"listxattr", f.etc, eacces}, {"rmdir", f.genB, eacces},
		{"statfs", f.diff, eacces},
	})
	if _, releases := f.src.counts(f.tl.desc.Ref, f.tl.desc.TOCDigest); releases != 0 {
		t.Errorf("the other user's rmdir released the layer %d times", releases)
	}
	f.checkOtherMaps(t, f.bin)
}

// As mounted for real (no allow_other), the kernel refuses other users
// before any request is sent, even what it has cached (attributes, a
// symlink's target), while the reads of a file a permitted caller opened
// still reach the server. (statfs is answered by the kernel with an empty
// result.)
func TestMountOtherUsersRefusedByKernel(t *testing.T) {
	f := newCallerFixture(t, Options{})
	f.rootCanUse(t)
	eacces := syscall.EACCES
	checkAs(t, f.bin, otherUID, []callerOp{
		{"stat", f.mnt, eacces}, {"stat", f.hello, eacces}, {"access", f.mnt, eacces},
		{"readdir", f.diff, eacces}, {"open", f.hello, eacces}, {"exec", f.prog, eacces},
		{"readlink", f.link, eacces}, {"getxattr", f.etc, eacces}, {"listxattr", f.etc, eacces},
		{"create", filepath.Join(f.genB, useFile), eacces}, {"rmdir", f.genB, eacces},
	})
	f.checkOtherMaps(t, f.bin)
}
