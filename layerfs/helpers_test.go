// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"sync"
	"syscall"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/store"
	"github.com/stargz-store/stargz-store/store/estargz"
)

var fuseDebug = flag.Bool("fusedebug", false, "log every FUSE request of the mount tests")

// testModTime is the mtime of every test tar entry.
var testModTime = time.Date(2023, 1, 2, 3, 4, 5, 0, time.UTC)

// tarEntry is one entry of a test tar; Body is the content of a regular
// file.
type tarEntry struct {
	tar.Header
	Body []byte
}

func dir(name string, mode int64) tarEntry {
	return tarEntry{Header: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode}}
}

func file(name string, mode int64, body string) tarEntry {
	return tarEntry{Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body))}, Body: []byte(body)}
}

// buildTar writes entries as a PAX tar, filling in mtimes.
func buildTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.Header
		h.Format = tar.FormatPAX
		if h.ModTime.IsZero() {
			h.ModTime = testModTime
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %s: %v", h.Name, err)
		}
		if _, err := tw.Write(e.Body); err != nil {
			t.Fatalf("tar body %s: %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// bytesBlob is a store.BlobReader over a blob in memory.
type bytesBlob []byte

func (b bytesBlob) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	return bytes.NewReader(b).ReadAt(p, off)
}

// testLayer is an eStargz blob built in memory.
type testLayer struct {
	blob []byte
	desc store.LayerDesc
}

// buildLayer converts a tar into an eStargz blob with small chunks, so
// that files of a few hundred KiB span several chunks.
func buildLayer(t testing.TB, ref refspec.Reference, tarball []byte) testLayer {
	t.Helper()
	return buildLayerChunks(t, ref, tarball, 64<<10)
}

// buildLayerChunks is buildLayer with chunks of chunkSize bytes.
func buildLayerChunks(t testing.TB, ref refspec.Reference, tarball []byte, chunkSize int) testLayer {
	t.Helper()
	var buf bytes.Buffer
	res, err := estargz.Build(t.Context(), &buf, bytes.NewReader(tarball), int64(len(tarball)), estargz.BuildOptions{ChunkSize: chunkSize})
	if err != nil {
		t.Fatalf("estargz.Build: %v", err)
	}
	return testLayer{blob: buf.Bytes(), desc: store.LayerDesc{
		Ref:              ref,
		Digest:           res.Digest,
		Size:             res.Size,
		MediaType:        "application/vnd.oci.image.layer.v1.tar+gzip",
		TOCDigest:        res.TOCDigest,
		DiffID:           res.DiffID,
		UncompressedSize: res.UncompressedSize,
	}}
}

// open returns a new *store.Layer of tl, closed at the end of the test.
func (tl testLayer) open(t testing.TB) *store.Layer {
	t.Helper()
	l, err := store.OpenLayer(context.Background(), bytesBlob(tl.blob), tl.desc, store.LayerOptions{})
	if err != nil {
		t.Fatalf("store.OpenLayer: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

type layerKey struct {
	ref string
	d   digest.Digest
}

// fakeSource serves layers registered by blob and TOC digest and counts
// Use and Release calls.
type fakeSource struct {
	mu       sync.Mutex
	layers   map[layerKey]*store.Layer
	err      error // returned by Layer when set
	uses     map[layerKey]int
	releases map[layerKey]int
	resolves int
}

func newFakeSource() *fakeSource {
	return &fakeSource{layers: map[layerKey]*store.Layer{}, uses: map[layerKey]int{}, releases: map[layerKey]int{}}
}

// add serves l under both of its names.
func (s *fakeSource) add(l *store.Layer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := l.Desc()
	s.layers[layerKey{d.Ref.String(), d.Digest}] = l
	s.layers[layerKey{d.Ref.String(), d.TOCDigest}] = l
}

func (s *fakeSource) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *fakeSource) Layer(_ context.Context, ref refspec.Reference, d digest.Digest) (*store.Layer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resolves++
	if s.err != nil {
		return nil, s.err
	}
	l, ok := s.layers[layerKey{ref.String(), d}]
	if !ok {
		return nil, store.ErrNotFound
	}
	return l, nil
}

func (s *fakeSource) Use(ref refspec.Reference, d digest.Digest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.uses[layerKey{ref.String(), d}]++
	return nil
}

func (s *fakeSource) Release(ref refspec.Reference, d digest.Digest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := layerKey{ref.String(), d}
	s.releases[k]++
	if _, ok := s.layers[k]; !ok {
		return store.ErrNotFound
	}
	return nil
}

func (s *fakeSource) counts(ref refspec.Reference, d digest.Digest) (uses, releases int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := layerKey{ref.String(), d}
	return s.uses[k], s.releases[k]
}

// mountLayerFS mounts src on a fresh directory and unmounts it when the
// test ends, also when it fails. Debug output goes to the test log with
// -fusedebug.
func mountLayerFS(t *testing.T, src Source, opts Options) string {
	t.Helper()
	testutil.RequireFUSE(t)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	opts.Debug = *fuseDebug
	mnt := t.TempDir()
	s, err := Mount(t.Context(), mnt, src, opts)
	if err != nil {
		t.Fatalf("Mount: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Unmount(); err != nil {
			// Never leave a mount behind, even when a test kept it busy.
			t.Errorf("Unmount: %v", err)
			if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
				t.Errorf("lazy unmount %s: %v", mnt, err)
				return
			}
		}
		s.Wait()
	})
	return mnt
}

// testWriter sends log output to t.Log while the test runs.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func mustRef(t testing.TB, s string) refspec.Reference {
	t.Helper()
	r, err := refspec.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// errnoOf returns the errno inside err, or 0.
func errnoOf(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}
