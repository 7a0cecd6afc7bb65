// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/registryauth"
	"github.com/stargz-store/stargz-store/store"
)

// The errno table through the real code path: a store.Manager resolving
// from an in-process registry, mounted.

// registryFixture is an image of one eStargz layer and one plain gzip
// layer in a registry, served by a real Manager (no disk cache, prefetch,
// speculation, read-ahead or background fetch: every read of a new region
// is a range request). The store and the mount share one logger.
type registryFixture struct {
	reg    *testutil.Registry
	layer  string // <mnt>/<base64(ref)>/<blob digest> of the eStargz layer
	gzip   string // the same for the gzip layer, which the store does not serve
	ref    string
	digest string // blob digest of the eStargz layer
	logs   *testutil.Logs
}

// bigSize is the size of the fixture's file "big": random, so that its
// 64 KiB chunks stay apart in the blob and far offsets are never fetched
// by a read of its start.
const bigSize = 4 << 20

func newRegistryFixture(t *testing.T, user, pass string) registryFixture {
	t.Helper()
	testutil.RequireFUSE(t)
	testutil.CheckLeaks(t)
	reg := testutil.NewRegistry(t)
	big := make([]byte, bigSize)
	rnd := rand.NewChaCha8([32]byte{1})
	_, _ = rnd.Read(big)
	tarball := testutil.Tar(t, testutil.File{Name: "big", Mode: 0o644, Data: string(big)})
	l := testutil.ESGZLayer(t, tarball, testutil.ESGZOptions{ChunkSize: 64 << 10})
	gz := testutil.GzipLayer(t, testutil.Tar(t, testutil.File{Name: "plain", Mode: 0o644, Data: "gzip"}))
	img := testutil.NewImage(t, ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}, l, gz)
	reg.Push(t, "app", "v1", img)
	if user != "" {
		reg.RequireBasicAuth(user, pass)
	}
	regs, err := registryauth.New(registryauth.Options{
		AuthFile:          reg.AuthFile(t, "", ""), // no credentials of ours
		RegistriesConf:    reg.RegistriesConf(t),
		RegistriesConfDir: t.TempDir(),
		CertDir:           t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { regs.Close() })
	log, logs := testutil.NewLogger()
	m, err := store.New(store.Options{Registries: regs, Retries: -1, ReadAhead: -1,
		NoPrefetch: true, NoBackgroundFetch: true, NoSpeculate: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() }) // after the unmount below
	mnt := mountLayerFS(t, m, Options{Logger: log})
	ref := mustRef(t, reg.Ref("app", "v1"))
	return registryFixture{reg: reg, ref: ref.String(), digest: l.Desc.Digest.String(), logs: logs,
		layer: filepath.Join(mnt, ref.PathElem(), l.Desc.Digest.String()),
		gzip:  filepath.Join(mnt, ref.PathElem(), gz.Desc.Digest.String())}
}

// openBig opens diff/big and reads its first page, which resolves and
// fetches.
func (f registryFixture) openBig(t *testing.T) *os.File {
	t.Helper()
	fh, err := os.Open(filepath.Join(f.layer, "diff", "big"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	if _, err := fh.ReadAt(make([]byte, 4096), 0); err != nil {
		t.Fatalf("read the start of big: %v", err)
	}
	return fh
}

// preadFar reads a page near the end of big, which nothing fetched yet.
func preadFar(fh *os.File) error {
	_, err := unix.Pread(int(fh.Fd()), make([]byte, 4096), bigSize-64<<10)
	return err
}

// A read through a handle opened before storage released the layer finds
// the store.Layer closed: the store's cancellation is EIO, not EINTR.
func TestMountReadAfterReleaseIsEIO(t *testing.T) {
	f := newRegistryFixture(t, "", "")
	fh := f.openBig(t)
	if _, err := os.Create(filepath.Join(f.layer, useFile)); errnoOf(err) != syscall.ENOENT {
		t.Fatalf("create use = %v, want ENOENT", err)
	}
	if err := unix.Rmdir(f.layer); err != syscall.ENOENT {
		t.Fatalf("rmdir (release) = %v, want ENOENT", err)
	}
	if err := preadFar(fh); err != syscall.EIO {
		t.Errorf("pread after release = %v, want EIO", err)
	}
}

// A registry that refuses us: at the ALS lookups the layer is not here
// (ENOENT, and storage pulls with its own credentials), on a file read the
// bytes cannot be had (EIO). Never EACCES, which is for refused callers.
func TestMountUnauthorizedLookupIsENOENT(t *testing.T) {
	f := newRegistryFixture(t, "user", "secret")
	for _, name := range []string{diffDir, infoFile, blobFile} {
		if _, err := os.Stat(filepath.Join(f.layer, name)); errnoOf(err) != syscall.ENOENT {
			t.Errorf("Stat(%s) against a registry answering 401 = %v, want ENOENT", name, err)
		}
	}
}

func TestMountUnauthorizedReadIsEIO(t *testing.T) {
	f := newRegistryFixture(t, "", "")
	fh := f.openBig(t)
	f.reg.Inject(testutil.Fault{Status: 401}) // every blob GET from now on
	if err := preadFar(fh); err != syscall.EIO {
		t.Errorf("pread with the registry answering 401 = %v, want EIO", err)
	}
	blob, err := os.Open(filepath.Join(f.layer, blobFile))
	if err != nil {
		t.Fatal(err)
	}
	defer blob.Close()
	if _, err := unix.Pread(int(blob.Fd()), make([]byte, 4096), 0); err != syscall.EIO {
		t.Errorf("pread of blob with the registry answering 401 = %v, want EIO", err)
	}
	if n := f.reg.Count(func(r testutil.Request) bool { return r.IsBlob() && r.Status == 401 }); n == 0 {
		t.Error("the registry answered no blob GET with 401: the reads never reached it")
	}
}

// warnings returns the lines logged at Warn or above.
func (f registryFixture) warnings() []testutil.LogRecord {
	var out []testutil.LogRecord
	for _, r := range f.logs.Records() {
		if r.Level >= slog.LevelWarn {
			out = append(out, r)
		}
	}
	return out
}

// Every lookup of a gzip layer fails (storage then pulls it): the store
// says why once, at Warn, and the FUSE tree only at Debug.
func TestMountGzipLookupsOneWarning(t *testing.T) {
	f := newRegistryFixture(t, "", "")
	const n = 5
	for range n {
		if _, err := os.Stat(filepath.Join(f.gzip, diffDir)); errnoOf(err) != syscall.ENOENT {
			t.Fatalf("Stat(diff) of a gzip layer = %v, want ENOENT", err)
		}
	}
	w := f.warnings()
	if len(w) != 1 || w[0].Msg != "layer not served lazily" || w[0].Attrs["reason"] != "not-lazy" ||
		w[0].Attrs["ref"] != f.ref || w[0].Attrs["digest"] != filepath.Base(f.gzip) || w[0].Attrs["err"] == "" {
		t.Errorf("warnings = %+v, want one from the store with ref, digest, reason not-lazy and err", w)
	}
	if got := f.logs.Find(slog.LevelDebug, "layer cannot be served"); len(got) != n {
		t.Errorf("%d debug lines from the FUSE tree, want one per lookup (%d)", len(got), n)
	}
}

// Reads that keep failing say so once per layer at Warn, then at Debug.
func TestMountFailedReadsOneWarning(t *testing.T) {
	f := newRegistryFixture(t, "", "")
	fh := f.openBig(t)
	f.reg.Inject(testutil.Fault{Status: 404}) // the blob is gone from the registry
	const n = 4
	for range n {
		if err := preadFar(fh); err != syscall.EIO {
			t.Fatalf("pread with the blob gone = %v, want EIO", err)
		}
	}
	w := f.warnings()
	if len(w) != 1 || w[0].Msg != "read failed" || w[0].Attrs["path"] != "big" ||
		w[0].Attrs["ref"] != f.ref || w[0].Attrs["digest"] != f.digest || w[0].Attrs["errno"] == "" {
		t.Errorf("warnings = %+v, want one read failed of big with ref and digest", w)
	}
	if got := f.logs.Find(slog.LevelDebug, "read failed"); len(got) < n-1 {
		t.Errorf("%d debug lines of failed reads, want at least %d", len(got), n-1)
	}
}
