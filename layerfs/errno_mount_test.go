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

// registryFixture is an image of one eStargz layer in a registry, served
// by a real Manager (no disk cache, prefetch, speculation, read-ahead or
// background fetch: every read of a new region is a range request).
type registryFixture struct {
	reg   *testutil.Registry
	layer string // <mnt>/<base64(ref)>/<blob digest>
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
	img := testutil.NewImage(t, ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}, l)
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
	m, err := store.New(store.Options{Registries: regs, Retries: -1, ReadAhead: -1,
		NoPrefetch: true, NoBackgroundFetch: true, NoSpeculate: true,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() }) // after the unmount below
	mnt := mountLayerFS(t, m, Options{})
	ref := mustRef(t, reg.Ref("app", "v1"))
	return registryFixture{reg: reg, layer: filepath.Join(mnt, ref.PathElem(), l.Desc.Digest.String())}
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
