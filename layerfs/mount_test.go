// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/stargz-store/stargz-store/cachedir"
	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/store"
)

// alsFixture is one mounted layer: its paths under both names.
type alsFixture struct {
	src   *fakeSource
	mnt   string
	tl    testLayer
	l     *store.Layer
	refEl string // <mnt>/<base64(ref)>
	genA  string // layer dir named by blob digest
	genB  string // layer dir named by TOC digest
}

func newALSFixture(t *testing.T, opts Options) alsFixture {
	t.Helper()
	testutil.CheckLeaks(t)
	ref := mustRef(t, "registry.example/stargz/app:v1")
	big := bytes.Repeat([]byte("0123456789abcdef"), 20000)
	tl := buildLayer(t, ref, buildTar(t, dir("etc/", 0o755), file("etc/hello", 0o644, "hello\n"), file("big", 0o644, string(big))))
	src := newFakeSource()
	l := tl.open(t)
	src.add(l)
	mnt := mountLayerFS(t, src, opts)
	refEl := filepath.Join(mnt, ref.PathElem())
	return alsFixture{src: src, mnt: mnt, tl: tl, l: l, refEl: refEl,
		genA: filepath.Join(refEl, tl.desc.Digest.String()), genB: filepath.Join(refEl, tl.desc.TOCDigest.String())}
}

func mustDigest(t testing.TB, s string) digest.Digest {
	t.Helper()
	d, err := digest.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestMountALSLayerDir(t *testing.T) {
	f := newALSFixture(t, Options{})
	for _, dir := range []string{f.genA, f.genB} {
		for _, name := range []string{"diff", "info", "blob"} {
			p := filepath.Join(dir, name)
			if _, err := os.Stat(p); err != nil {
				t.Errorf("Stat(%s): %v", p, err)
			}
			// Podman 5's fileutils.Exists: FUSE_ACCESS with mask 0.
			if err := unix.Faccessat(unix.AT_FDCWD, p, unix.F_OK, unix.AT_EACCESS); err != nil {
				t.Errorf("faccessat(%s, F_OK): %v", p, err)
			}
		}
	}
	for _, p := range []string{f.mnt, f.refEl, f.genA} {
		fi, err := os.Stat(p)
		if err != nil || !fi.IsDir() {
			t.Errorf("Stat(%s) = %v, %v; want a directory", p, fi, err)
		}
		if err := unix.Access(p, unix.R_OK|unix.X_OK); err != nil {
			t.Errorf("access(%s, R_OK|X_OK): %v", p, err)
		}
	}
	if ents, err := os.ReadDir(f.genA); err != nil || len(ents) != 0 {
		t.Errorf("ReadDir(layer dir) = %v, %v; want empty", ents, err)
	}
	// Nodes outside diff trees have distinct numbers below 2^32, the root 1.
	seen := map[uint64]string{}
	for _, p := range []string{f.mnt, f.refEl, f.genA, f.genB, f.genA + "/info", f.genA + "/blob", f.genB + "/info", f.genB + "/blob"} {
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		if prev, dup := seen[st.Ino]; dup || st.Ino >= 1<<32 || (p == f.mnt) != (st.Ino == rootIno) {
			t.Errorf("ino of %s = %d (also %q)", p, st.Ino, prev)
		}
		seen[st.Ino] = p
	}
}

func TestMountALSNegative(t *testing.T) {
	f := newALSFixture(t, Options{})
	unknown := "sha256:" + strings.Repeat("ab", 32)
	tests := []struct {
		name string
		path string
	}{
		{"invalid base64", filepath.Join(f.mnt, "!!!not-base64")},
		{"unpadded base64", filepath.Join(f.mnt, base64.RawStdEncoding.EncodeToString([]byte("docker.io/library/alpine:latest")))},
		{"non-canonical reference", filepath.Join(f.mnt, "YWxwaW5l")}, // "alpine"
		{"not a digest", filepath.Join(f.refEl, "latest")},
		{"bad digest", filepath.Join(f.refEl, "sha256:1234")},
		{"use", filepath.Join(f.genA, "use")},
		{"diff1", filepath.Join(f.genA, "diff1")},
		{"diff2", filepath.Join(f.genB, "diff2")},
		{"other", filepath.Join(f.genA, "pool")},
		{"unknown layer diff", filepath.Join(f.refEl, unknown, "diff")},
		{"unknown layer info", filepath.Join(f.refEl, unknown, "info")},
		{"unknown layer blob", filepath.Join(f.refEl, unknown, "blob")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := os.Lstat(tt.path); errnoOf(err) != syscall.ENOENT {
				t.Errorf("Lstat(%s) = %v, want ENOENT", tt.path, err)
			}
		})
	}
}

func TestMountALSUseAndRelease(t *testing.T) {
	f := newALSFixture(t, Options{})
	ref, d := f.tl.desc.Ref, f.tl.desc.TOCDigest
	// notifyUseAdditionalLayer: os.Create(<layer>/use).
	_, err := os.Create(filepath.Join(f.genB, "use"))
	if errnoOf(err) != syscall.ENOENT {
		t.Fatalf("Create(use) = %v, want ENOENT", err)
	}
	if uses, _ := f.src.counts(ref, d); uses != 1 {
		t.Errorf("Source.Use called %d times, want 1", uses)
	}
	// `use` still does not exist, and a second create counts again.
	if _, err := os.Lstat(filepath.Join(f.genB, "use")); errnoOf(err) != syscall.ENOENT {
		t.Errorf("Lstat(use) after create = %v, want ENOENT", err)
	}
	if _, err := os.Create(filepath.Join(f.genB, "use")); errnoOf(err) != syscall.ENOENT {
		t.Errorf("second Create(use) = %v, want ENOENT", err)
	}
	if uses, _ := f.src.counts(ref, d); uses != 2 {
		t.Errorf("Source.Use called %d times, want 2", uses)
	}
	// notifyReleaseAdditionalLayer: rmdir(<layer>).
	if err := unix.Rmdir(f.genB); err != syscall.ENOENT {
		t.Fatalf("Rmdir(layer) = %v, want ENOENT", err)
	}
	if _, releases := f.src.counts(ref, d); releases != 1 {
		t.Errorf("Source.Release called %d times, want 1", releases)
	}
	// Unknown layers release to ENOENT too.
	unknown := "sha256:" + strings.Repeat("cd", 32)
	if err := unix.Rmdir(filepath.Join(f.refEl, unknown)); err != syscall.ENOENT {
		t.Errorf("Rmdir(unknown layer) = %v, want ENOENT", err)
	}
	// The layer is still served.
	if _, err := os.Stat(filepath.Join(f.genB, "diff")); err != nil {
		t.Errorf("Stat(diff) after release: %v", err)
	}
	// Other names cannot be created.
	if _, err := os.Create(filepath.Join(f.genB, "other")); errnoOf(err) != syscall.EROFS {
		t.Errorf("Create(other) = %v, want EROFS", err)
	}
}

func TestMountALSInfo(t *testing.T) {
	f := newALSFixture(t, Options{})
	for _, tt := range []struct{ dir, name string }{{f.genA, "gen A"}, {f.genB, "gen B"}} {
		d := filepath.Base(tt.dir)
		want, err := f.l.Info(mustDigest(t, d))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(tt.dir, "info")
		got, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: ReadFile(info) = %q, %v, want %q", tt.name, got, err, want)
		}
		fi, err := os.Stat(p)
		if err != nil || fi.Size() != int64(len(want)) || !fi.Mode().IsRegular() {
			t.Errorf("%s: Stat(info) = %v, %v, want a regular file of %d bytes", tt.name, fi, err, len(want))
		}
	}
	genA, _ := os.ReadFile(filepath.Join(f.genA, "info"))
	if !bytes.Contains(genA, []byte(`"diff-digest":"`+f.tl.desc.DiffID.String())) {
		t.Errorf("gen A info %s lacks the DiffID", genA)
	}
	genB, _ := os.ReadFile(filepath.Join(f.genB, "info"))
	if !bytes.Contains(genB, []byte(`"toc-digest":"`+f.tl.desc.TOCDigest.String())) {
		t.Errorf("gen B info %s lacks the TOC digest", genB)
	}
	if err := os.WriteFile(filepath.Join(f.genA, "info"), []byte("x"), 0o644); errnoOf(err) != syscall.EROFS {
		t.Errorf("WriteFile(info) = %v, want EROFS", err)
	}
}

// cachedLayer opens tl over blob with a cache (the blob file reads
// through it) and serves it from src in place of the fixture's layer.
func cachedLayer(t *testing.T, src *fakeSource, tl testLayer, blob store.BlobReader) *store.Layer {
	t.Helper()
	cache, err := cachedir.Open(t.TempDir(), cachedir.Options{MaxSize: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	l, err := store.OpenLayer(t.Context(), blob, tl.desc, store.LayerOptions{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	src.add(l)
	return l
}

func TestMountALSBlob(t *testing.T) {
	f := newALSFixture(t, Options{})
	cachedLayer(t, f.src, f.tl, bytesBlob(f.tl.blob))
	p := filepath.Join(f.genA, "blob")
	fi, err := os.Stat(p)
	if err != nil || fi.Size() != int64(len(f.tl.blob)) {
		t.Fatalf("Stat(blob) = %v, %v, want size %d", fi, err, len(f.tl.blob))
	}
	got, err := os.ReadFile(p)
	if err != nil || !bytes.Equal(got, f.tl.blob) {
		t.Fatalf("ReadFile(blob): %d bytes, %v; want the %d-byte blob", len(got), err, len(f.tl.blob))
	}
	fh, err := os.Open(filepath.Join(f.genB, "blob"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	size := len(f.tl.blob)
	for range 50 {
		off := rng.IntN(size)
		n := min(rng.IntN(200000)+1, size-off)
		buf := make([]byte, n)
		if k, err := fh.ReadAt(buf, int64(off)); k != n || err != nil || !bytes.Equal(buf, f.tl.blob[off:off+n]) {
			t.Fatalf("ReadAt(blob, %d bytes at %d) = %d, %v or wrong bytes", n, off, k, err)
		}
	}
	if k, err := fh.ReadAt(make([]byte, 10), int64(size)); k != 0 || err == nil {
		t.Errorf("ReadAt(blob) at the end = %d, %v; want 0, EOF", k, err)
	}
}

// TestMountALSBlobCorrupt: a registry whose blob does not match its
// digest gives the reader of the blob file EIO, never its bytes.
func TestMountALSBlobCorrupt(t *testing.T) {
	f := newALSFixture(t, Options{})
	bad := bytes.Clone(f.tl.blob)
	bad[100] ^= 1 // in the first file's member, far from the TOC
	cachedLayer(t, f.src, f.tl, bytesBlob(bad))
	got, err := os.ReadFile(filepath.Join(f.genA, "blob"))
	if errnoOf(err) != syscall.EIO || len(got) != 0 {
		t.Fatalf("ReadFile(blob) of a corrupt blob = %d bytes, %v; want EIO", len(got), err)
	}
}

// TestMountALSErrors checks that resolve errors reach the caller mapped,
// and that failures are not cached: the layer works right after. A zero
// entry timeout makes every stat look diff up again.
func TestMountALSErrors(t *testing.T) {
	zero := time.Duration(0)
	f := newALSFixture(t, Options{EntryTimeout: &zero})
	diff := filepath.Join(f.genA, "diff")
	tests := []struct {
		err  error
		want syscall.Errno
	}{
		{fmt.Errorf("resolve: %w", store.ErrNotLazy), syscall.ENOENT},
		{fmt.Errorf("resolve: %w", store.ErrNotFound), syscall.ENOENT},
		{errors.New("registry said 500"), syscall.EIO},
	}
	for _, tt := range tests {
		f.src.setErr(tt.err)
		if _, err := os.Stat(diff); errnoOf(err) != tt.want {
			t.Errorf("Stat(diff) with Source error %v = %v, want %v", tt.err, err, tt.want)
		}
		f.src.setErr(nil)
		if _, err := os.Stat(diff); err != nil {
			t.Errorf("Stat(diff) right after the error cleared: %v", err)
		}
	}
}

// TestMountRebuildsFreedLayer checks that a layer freed by the store and
// resolved again as a new *store.Layer gets new nodes, never the closed
// layer's.
func TestMountRebuildsFreedLayer(t *testing.T) {
	zero := time.Duration(0)
	f := newALSFixture(t, Options{EntryTimeout: &zero})
	inoOf := func(p string) uint64 {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatalf("Lstat(%s): %v", p, err)
		}
		return st.Ino
	}
	diff, info, blob := filepath.Join(f.genB, "diff"), filepath.Join(f.genB, "info"), filepath.Join(f.genB, "blob")
	if got, want := inoOf(diff), diffIno(f.l.ID(), 1); got != want {
		t.Fatalf("diff ino = %#x, want %#x", got, want)
	}
	oldInfo, oldBlob := inoOf(info), inoOf(blob)
	if inoOf(info) != oldInfo {
		t.Errorf("info ino changed without a new layer")
	}

	f.l.Close()
	l2 := cachedLayer(t, f.src, f.tl, bytesBlob(f.tl.blob)) // the blob file reads through a cache
	if got, want := inoOf(diff), diffIno(l2.ID(), 1); got != want {
		t.Errorf("diff ino after re-resolve = %#x, want %#x", got, want)
	}
	if inoOf(info) == oldInfo || inoOf(blob) == oldBlob {
		t.Errorf("info or blob kept its node across a new layer")
	}
	if got, err := os.ReadFile(filepath.Join(diff, "etc/hello")); err != nil || string(got) != "hello\n" {
		t.Errorf("ReadFile(etc/hello) from the new layer = %q, %v", got, err)
	}
	if got, err := os.ReadFile(blob); err != nil || !bytes.Equal(got, f.tl.blob) {
		t.Errorf("ReadFile(blob) from the new layer: %v", err)
	}
}

func TestMountOptions(t *testing.T) {
	f := newALSFixture(t, Options{})
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Skip(err)
	}
	var line string
	for l := range strings.SplitSeq(string(mi), "\n") {
		if fields := strings.Fields(l); len(fields) > 4 && fields[4] == f.mnt {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("%s not in /proc/self/mountinfo", f.mnt)
	}
	// allow_other would let every local user reach the layers (caller.go).
	for _, bad := range []string{"nosuid", "nodev", "default_permissions", "allow_other", " ro,", " ro "} {
		if strings.Contains(line, bad) {
			t.Errorf("mount has %q: %s", bad, line)
		}
	}
	for _, want := range []string{"stargz-store", "user_id=", "max_read=1048576"} {
		if !strings.Contains(line, want) {
			t.Errorf("mount lacks %q: %s", want, line)
		}
	}
}

func TestMountFailsCleanly(t *testing.T) {
	testutil.RequireFUSE(t)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{filepath.Join(t.TempDir(), "missing"), file} {
		s, err := Mount(t.Context(), dir, newFakeSource(), Options{})
		if err == nil {
			s.Unmount()
			t.Errorf("Mount(%s) succeeded", dir)
			continue
		}
		if !strings.Contains(err.Error(), dir) {
			t.Errorf("Mount(%s) error %q does not name the directory", dir, err)
		}
	}
}

func TestMountUnmountIdempotent(t *testing.T) {
	testutil.RequireFUSE(t)
	dir := t.TempDir()
	s, err := Mount(t.Context(), dir, newFakeSource(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Unmount(); err != nil {
		t.Fatalf("Unmount: %v", err)
	}
	s.Wait()
	if err := s.Unmount(); err != nil {
		t.Errorf("second Unmount: %v", err)
	}
	var st, parent unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(filepath.Dir(dir), &parent); err != nil {
		t.Fatal(err)
	}
	if st.Dev != parent.Dev {
		t.Errorf("%s is still a mount point after Unmount", dir)
	}
}

// TestMountALSNoNegativeCache checks that a layer that failed to resolve
// is found as soon as the store has it, with the default timeouts.
func TestMountALSNoNegativeCache(t *testing.T) {
	f := newALSFixture(t, Options{})
	tl2 := buildLayer(t, f.tl.desc.Ref, buildTar(t, file("second", 0o644, "2")))
	diff := filepath.Join(f.refEl, tl2.desc.TOCDigest.String(), "diff")
	if _, err := os.Stat(diff); errnoOf(err) != syscall.ENOENT {
		t.Fatalf("Stat(diff) of a layer not in the store = %v, want ENOENT", err)
	}
	f.src.add(tl2.open(t))
	if _, err := os.Stat(filepath.Join(diff, "second")); err != nil {
		t.Errorf("Stat(diff/second) right after the store got the layer: %v", err)
	}
}

// TestMountLogsFailedLookups checks that each failed lookup is logged
// once, at Debug: why a layer cannot be served is the Source's to say.
func TestMountLogsFailedLookups(t *testing.T) {
	log, logs := testutil.NewLogger()
	f := newALSFixture(t, Options{Logger: log})
	f.src.setErr(errors.New("registry said 500"))
	if _, err := os.Stat(filepath.Join(f.genA, "diff")); errnoOf(err) != syscall.EIO {
		t.Fatalf("Stat(diff) = %v, want EIO", err)
	}
	if _, err := os.Stat(filepath.Join(f.mnt, "%%%")); errnoOf(err) != syscall.ENOENT {
		t.Fatalf("Stat(bad ref) = %v, want ENOENT", err)
	}
	lines := logs.Find(slog.LevelDebug, "layer cannot be served")
	if len(lines) != 1 || lines[0].Attrs["name"] != "diff" || lines[0].Attrs["digest"] != f.tl.desc.Digest.String() {
		t.Errorf("debug lines = %+v, want one for diff of %s", lines, f.tl.desc.Digest)
	}
	if got := logs.Find(slog.LevelDebug, "lookup: not a reference"); len(got) != 1 {
		t.Errorf("debug lines for the bad reference = %+v, want one", got)
	}
	for _, r := range logs.Records() {
		if r.Level >= slog.LevelWarn {
			t.Errorf("unexpected %v line %q %v", r.Level, r.Msg, r.Attrs)
		}
	}
}

func TestMountReadAhead(t *testing.T) {
	tests := []struct {
		name string
		kb   int
		want string // "" means the kernel's default, whatever it is
	}{
		{"default", 0, strconv.Itoa(DefaultReadAheadKB)},
		{"set", 2048, "2048"},
		{"kernel default", -1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newALSFixture(t, Options{ReadAheadKB: tt.kb})
			var st unix.Stat_t
			if err := unix.Stat(f.mnt, &st); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(bdiReadAheadPath(st.Dev))
			if err != nil {
				t.Fatalf("read the mount's read-ahead: %v", err)
			}
			got := strings.TrimSpace(string(b))
			if tt.want != "" && got != tt.want {
				t.Errorf("read_ahead_kb = %s, want %s", got, tt.want)
			}
			if tt.want == "" && got == strconv.Itoa(DefaultReadAheadKB) {
				t.Errorf("read_ahead_kb = %s with ReadAheadKB < 0, want the kernel's default", got)
			}
		})
	}
}
