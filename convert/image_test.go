// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	refesgz "github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/types"

	"github.com/stargz-store/stargz-store/store/estargz"
)

const dockerManifestType = "application/vnd.docker.distribution.manifest.v2+json"

func randomText(seed uint64, n int) string {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(r.IntN(26))
	}
	return string(b)
}

// sampleLayers returns a gzip, a zstd and an uncompressed layer.
func sampleLayers(t *testing.T) []testLayer {
	t.Helper()
	t1 := makeTar(t,
		tarEntry{name: "etc/", typ: tar.TypeDir},
		tarEntry{name: "etc/hosts", body: "127.0.0.1 localhost\n"},
		tarEntry{name: "bin/", typ: tar.TypeDir},
		tarEntry{name: "bin/big", body: randomText(1, 300<<10)},
		tarEntry{name: "bin/sh", typ: tar.TypeSymlink, link: "big"},
	)
	t2 := makeTar(t,
		tarEntry{name: "etc/hosts", body: "10.0.0.1 other\n"},
		tarEntry{name: "etc/.wh.gone", body: ""},
		tarEntry{name: "usr/lib/x", body: randomText(2, 5000)},
	)
	t3 := makeTar(t,
		tarEntry{name: "empty", body: ""},
		tarEntry{name: "data", body: "uncompressed layer\n"},
	)
	return []testLayer{
		{tar: t1, blob: gzipBytes(t, t1), mediaType: ocispec.MediaTypeImageLayerGzip},
		{tar: t2, blob: zstdBytes(t, t2), mediaType: ocispec.MediaTypeImageLayerZstd},
		{tar: t3, blob: t3, mediaType: ocispec.MediaTypeImageLayer},
	}
}

// gzipLayers returns layers a Docker schema 2 manifest can hold.
func gzipLayers(t *testing.T) []testLayer {
	t.Helper()
	t1 := makeTar(t, tarEntry{name: "a", body: "first\n"}, tarEntry{name: "dir/", typ: tar.TypeDir},
		tarEntry{name: "dir/b", body: randomText(3, 70<<10)})
	t2 := makeTar(t, tarEntry{name: "a", body: "second\n"})
	const mt = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	return []testLayer{{tar: t1, blob: gzipBytes(t, t1), mediaType: mt}, {tar: t2, blob: gzipBytes(t, t2), mediaType: mt}}
}

// checkConverted fetches repo:tag and checks that it is an OCI eStargz image whose layers hold
// the files of want, and returns its manifest and the opened layers.
func checkConverted(t *testing.T, reg *testRegistry, repo, tag string, manifestDigest digest.Digest, want []testLayer) (ocispec.Manifest, []openedLayer) {
	t.Helper()
	raw, ok := reg.get(t, repo+"/manifests/"+tag)
	if !ok {
		t.Fatalf("%s:%s not found", repo, tag)
	}
	if got := digest.FromBytes(raw); got != manifestDigest {
		t.Errorf("Image() = %s, registry has manifest %s", manifestDigest, got)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.MediaType != ocispec.MediaTypeImageManifest || m.Config.MediaType != ocispec.MediaTypeImageConfig {
		t.Errorf("manifest mediaType %q config %q, want OCI", m.MediaType, m.Config.MediaType)
	}
	cfgRaw, ok := reg.get(t, repo+"/blobs/"+m.Config.Digest.String())
	if !ok {
		t.Fatalf("config %s missing", m.Config.Digest)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(cfgRaw, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(m.Layers) != len(want) || len(cfg.RootFS.DiffIDs) != len(want) || len(cfg.History) != len(want) {
		t.Fatalf("%d layers, %d diff_ids, %d history entries, want %d each", len(m.Layers), len(cfg.RootFS.DiffIDs), len(cfg.History), len(want))
	}
	if len(cfg.Config.Cmd) != 1 || cfg.Config.Cmd[0] != "/bin/sh" || cfg.History[0].CreatedBy != "layer 0" {
		t.Errorf("config fields not preserved: %s", cfgRaw)
	}
	var opened []openedLayer
	for i, l := range m.Layers {
		opened = append(opened, checkLayer(t, reg, repo, l, cfg.RootFS.DiffIDs[i], want[i].tar))
	}
	return m, opened
}

// openedLayer is one converted layer, opened by this project's reader and the reference one.
type openedLayer struct {
	blob *estargz.Blob
	ref  *refesgz.Reader
}

// checkLayer checks one eStargz layer against its annotations, DiffID and source tar.
func checkLayer(t *testing.T, reg *testRegistry, repo string, l ocispec.Descriptor, diffID digest.Digest, srcTar []byte) openedLayer {
	t.Helper()
	blob, ok := reg.get(t, repo+"/blobs/"+l.Digest.String())
	if !ok || digest.FromBytes(blob) != l.Digest || int64(len(blob)) != l.Size {
		t.Fatalf("layer %s: blob missing or wrong", l.Digest)
	}
	if l.MediaType != ocispec.MediaTypeImageLayerGzip {
		t.Errorf("layer %s: mediaType %q", l.Digest, l.MediaType)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if got := digest.FromBytes(plain); got != diffID {
		t.Errorf("layer %s: diff_id %s, uncompressed sha256 %s", l.Digest, diffID, got)
	}
	if got := l.Annotations[uncompressedSizeAnnotation]; got != strconv.Itoa(len(plain)) {
		t.Errorf("layer %s: %s = %q, want %d", l.Digest, uncompressedSizeAnnotation, got, len(plain))
	}
	toc := digest.Digest(l.Annotations[tocDigestAnnotation])
	r, err := refesgz.Open(io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))))
	if err != nil {
		t.Fatalf("layer %s: estargz.Open: %v", l.Digest, err)
	}
	if r.TOCDigest() != toc {
		t.Errorf("layer %s: TOC digest %s, annotation %q", l.Digest, r.TOCDigest(), toc)
	}
	if _, err := r.VerifyTOC(toc); err != nil {
		t.Errorf("layer %s: VerifyTOC: %v", l.Digest, err)
	}
	b, err := estargz.Open(t.Context(), bytes.NewReader(blob), int64(len(blob)), estargz.OpenOptions{TOCDigest: toc})
	if err != nil {
		t.Fatalf("layer %s: estargz.Open: %v", l.Digest, err)
	}
	tr := tar.NewReader(bytes.NewReader(srcTar))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		e, ok := r.Lookup(strings.TrimSuffix(h.Name, "/"))
		if !ok {
			t.Errorf("layer %s: %s missing from TOC", l.Digest, h.Name)
			continue
		}
		if h.Typeflag == tar.TypeSymlink && e.LinkName != h.Linkname {
			t.Errorf("layer %s: %s links to %q, want %q", l.Digest, h.Name, e.LinkName, h.Linkname)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		want, _ := io.ReadAll(tr)
		sr, err := r.OpenFile(h.Name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(sr)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("layer %s: %s has %d bytes (err %v), want the source's %d", l.Digest, h.Name, len(got), err, len(want))
		}
	}
	return openedLayer{blob: b, ref: r}
}

// assertEmptyDir fails if the temporary directory kept any file.
func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("temporary file left behind: %s", e.Name())
	}
}

func TestImageIndex(t *testing.T) {
	reg := newTestRegistry(t, nil)
	layers := sampleLayers(t)
	host := reg.pushImage(t, "src", "host", ocispec.MediaTypeImageManifest, layers)
	otherArch := "s390x"
	if runtime.GOARCH == otherArch {
		otherArch = "arm64"
	}
	other := reg.pushImage(t, "src", "other", ocispec.MediaTypeImageManifest, gzipLayers(t))
	host.Platform = &ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	other.Platform = &ocispec.Platform{OS: runtime.GOOS, Architecture: otherArch}
	reg.pushManifest(t, "src", "v1", ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{other, host},
	})

	opts := testOptions(t)
	opts.ChunkSize = 64 << 10
	var progress bytes.Buffer
	opts.Progress = &progress
	d, err := Image(t.Context(), "docker://"+reg.host+"/src:v1", reg.host+"/dst:v1", opts)
	if err != nil {
		t.Fatalf("Image() error: %v", err)
	}
	raw, ok := reg.get(t, "dst/manifests/v1")
	if !ok || digest.FromBytes(raw) != d {
		t.Fatalf("dst:v1 missing or not %s", d)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	if idx.MediaType != ocispec.MediaTypeImageIndex || len(idx.Manifests) != 2 {
		t.Fatalf("dst:v1 is %q with %d manifests, want an OCI index of 2", idx.MediaType, len(idx.Manifests))
	}
	wantLayers := [][]testLayer{gzipLayers(t), layers}
	for i, m := range idx.Manifests {
		if want := []*ocispec.Platform{other.Platform, host.Platform}[i]; m.Platform == nil || m.Platform.Architecture != want.Architecture {
			t.Errorf("manifest %d: platform %+v, want %+v", i, m.Platform, want)
		}
		checkConverted(t, reg, "dst", m.Digest.String(), m.Digest, wantLayers[i])
	}
	assertEmptyDir(t, opts.TempDir)
	if n := strings.Count(progress.String(), "-> sha256:"); n != 2*len(layers)-1 {
		t.Errorf("progress shows %d converted layers, want %d:\n%s", n, 2*len(layers)-1, progress.String())
	}

	// One platform: a plain manifest.
	opts.Platform = runtime.GOOS + "/" + runtime.GOARCH
	d, err = Image(t.Context(), "docker://"+reg.host+"/src:v1", reg.host+"/dst:host", opts)
	if err != nil {
		t.Fatalf("Image(--platform) error: %v", err)
	}
	checkConverted(t, reg, "dst", "host", d, layers)
}

func TestImagePrioritizedFiles(t *testing.T) {
	reg := newTestRegistry(t, nil)
	layers := sampleLayers(t)
	reg.pushImage(t, "src", "v1", ocispec.MediaTypeImageManifest, layers)
	opts := testOptions(t)
	opts.PrioritizedFiles = []string{"/etc/hosts", "./usr/lib/x", "bin/sh", "not/anywhere"}
	d, err := Image(t.Context(), reg.host+"/src:v1", reg.host+"/dst:v1", opts)
	if err != nil {
		t.Fatalf("Image() error: %v", err)
	}
	_, opened := checkConverted(t, reg, "dst", "v1", d, layers)
	prefetched := [][]string{{"etc/hosts"}, {"etc/hosts", "usr/lib/x"}, nil}
	for i, names := range prefetched {
		b := opened[i].blob
		if len(names) == 0 {
			if !b.NoPrefetch || b.PrefetchEnd != 0 {
				t.Errorf("layer %d: NoPrefetch %v PrefetchEnd %d, want the no-prefetch landmark", i, b.NoPrefetch, b.PrefetchEnd)
			}
			continue
		}
		if b.PrefetchEnd <= 0 {
			t.Errorf("layer %d: no prefetch landmark", i)
		}
		for _, name := range names {
			e, ok := opened[i].ref.Lookup(name)
			if !ok || e.Offset >= b.PrefetchEnd {
				t.Errorf("layer %d: %s (found %v) is not before the prefetch landmark", i, name, ok)
			}
		}
	}
	if e, ok := opened[0].ref.Lookup("bin/big"); !ok || e.Offset < opened[0].blob.PrefetchEnd {
		t.Errorf("layer 0: bin/big (found %v) is not after the prefetch landmark", ok)
	}
}

func TestImageIdempotent(t *testing.T) {
	reg := newTestRegistry(t, nil)
	layers := gzipLayers(t)
	reg.pushImage(t, "src", "v1", dockerManifestType, layers)
	opts := testOptions(t)
	opts.Parallelism = 1
	d1, err := Image(t.Context(), reg.host+"/src:v1", reg.host+"/once:v1", opts)
	if err != nil {
		t.Fatalf("Image(src) error: %v", err)
	}
	m1, _ := checkConverted(t, reg, "once", "v1", d1, layers)
	d2, err := Image(t.Context(), reg.host+"/once:v1", reg.host+"/twice:v1", opts)
	if err != nil {
		t.Fatalf("Image(once) error: %v", err)
	}
	m2, _ := checkConverted(t, reg, "twice", "v1", d2, layers)
	for i := range m1.Layers {
		if m1.Layers[i].Digest != m2.Layers[i].Digest {
			t.Errorf("layer %d: %s after the first conversion, %s after the second", i, m1.Layers[i].Digest, m2.Layers[i].Digest)
		}
	}
	if d1 != d2 {
		t.Errorf("manifest %s after the first conversion, %s after the second", d1, d2)
	}
	assertEmptyDir(t, opts.TempDir)
}

// TestImagePassThroughMissingSize copies eStargz layers whose uncompressed-size annotation is
// missing: it is computed, and the blobs stay the same.
func TestImagePassThroughMissingSize(t *testing.T) {
	reg := newTestRegistry(t, nil)
	layers := gzipLayers(t)
	reg.pushImage(t, "src", "v1", dockerManifestType, layers)
	opts := testOptions(t)
	d1, err := Image(t.Context(), reg.host+"/src:v1", reg.host+"/once:v1", opts)
	if err != nil {
		t.Fatalf("Image(src) error: %v", err)
	}
	m, _ := checkConverted(t, reg, "once", "v1", d1, layers)
	for i := range m.Layers {
		delete(m.Layers[i].Annotations, uncompressedSizeAnnotation)
	}
	reg.pushManifest(t, "once", "nosize", ocispec.MediaTypeImageManifest, m)
	d2, err := Image(t.Context(), reg.host+"/once:nosize", reg.host+"/twice:v1", opts)
	if err != nil {
		t.Fatalf("Image(once:nosize) error: %v", err)
	}
	m2, _ := checkConverted(t, reg, "twice", "v1", d2, layers)
	for i := range m.Layers {
		if m.Layers[i].Digest != m2.Layers[i].Digest {
			t.Errorf("layer %d: %s became %s", i, m.Layers[i].Digest, m2.Layers[i].Digest)
		}
	}
}

// TestImageFalseAnnotation converts a layer whose TOC digest annotation lies.
func TestImageFalseAnnotation(t *testing.T) {
	reg := newTestRegistry(t, nil)
	layers := gzipLayers(t)
	layers[0].annotations = map[string]string{tocDigestAnnotation: digest.FromString("not a toc").String()}
	reg.pushImage(t, "src", "v1", ocispec.MediaTypeImageManifest, layers)
	opts := testOptions(t)
	d, err := Image(t.Context(), reg.host+"/src:v1", reg.host+"/dst:v1", opts)
	if err != nil {
		t.Fatalf("Image() error: %v", err)
	}
	m, _ := checkConverted(t, reg, "dst", "v1", d, layers)
	if m.Layers[0].Digest == digest.FromBytes(layers[0].blob) {
		t.Error("a layer with a false TOC digest annotation was copied unchanged")
	}
	assertEmptyDir(t, opts.TempDir)
}

func TestImageCanceled(t *testing.T) {
	reg := newTestRegistry(t, nil)
	reg.pushImage(t, "src", "v1", dockerManifestType, gzipLayers(t))
	opts := testOptions(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Image(ctx, reg.host+"/src:v1", reg.host+"/dst:v1", opts)
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrUnreachable) {
		t.Errorf("Image(cancelled) error = %v, want context.Canceled only", err)
	}
	if _, ok := reg.get(t, "dst/manifests/v1"); ok {
		t.Error("destination tag exists after a cancelled conversion")
	}
}

func TestImageMissingTag(t *testing.T) {
	reg := newTestRegistry(t, nil)
	reg.pushImage(t, "src", "v1", dockerManifestType, gzipLayers(t))
	opts := testOptions(t)
	for _, src := range []string{"src:nope", "nothere:v1"} {
		_, err := Image(t.Context(), reg.host+"/"+src, reg.host+"/dst:v1", opts)
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("Image(%s) error = %v, want ErrNotFound", src, err)
		}
		t.Logf("Image(%s) error: %v", src, err)
	}
	if _, ok := reg.get(t, "dst/manifests/v1"); ok {
		t.Error("destination tag exists after a failed conversion")
	}
	assertEmptyDir(t, opts.TempDir)
}

// TestImageLayerFailure makes one layer download fail: nothing may be tagged.
func TestImageLayerFailure(t *testing.T) {
	layers := gzipLayers(t)
	bad := digest.FromBytes(layers[1].blob).String()
	reg := newTestRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/src/blobs/"+bad) {
				http.Error(w, "boom", http.StatusInternalServerError)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	reg.pushImage(t, "src", "v1", dockerManifestType, layers)
	opts := testOptions(t)
	_, err := Image(t.Context(), reg.host+"/src:v1", reg.host+"/dst:v1", opts)
	if err == nil {
		t.Fatal("Image() succeeded with a failing layer")
	}
	t.Logf("error: %v", err)
	if _, ok := reg.get(t, "dst/manifests/v1"); ok {
		t.Error("destination tag exists after a failed conversion")
	}
	assertEmptyDir(t, opts.TempDir)
}

func TestImageCredentials(t *testing.T) {
	reg := newTestRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "user" || p != "secret" {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	plain := newTestRegistry(t, nil)
	plain.pushImage(t, "src", "v1", dockerManifestType, gzipLayers(t))
	// Copy the image into the authenticated registry by converting it with good credentials.
	tests := []struct {
		name     string
		password string
		src      string
		wantErr  error
	}{
		{name: "good", password: "secret", src: plain.host + "/src:v1"},
		{name: "bad-source", password: "wrong", src: reg.host + "/dst:v1", wantErr: ErrUnauthorized},
		{name: "bad-destination", password: "wrong", src: plain.host + "/src:v1", wantErr: ErrUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions(t)
			opts.SystemContext.DockerAuthConfig = &types.DockerAuthConfig{Username: "user", Password: tt.password}
			_, err := Image(t.Context(), tt.src, reg.host+"/dst:v1", opts)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("Image() error = %v, want %v", err, tt.wantErr)
			}
			t.Logf("error: %v", err)
		})
	}
}

func TestImageUnreachable(t *testing.T) {
	reg := newTestRegistry(t, nil)
	reg.pushImage(t, "src", "v1", dockerManifestType, gzipLayers(t))
	srv := httptest.NewServer(http.NotFoundHandler())
	gone := strings.TrimPrefix(srv.URL, "http://")
	srv.Close()
	tests := []struct{ name, src, dst, wantText string }{
		{name: "source", src: gone + "/src:v1", dst: reg.host + "/dst:v1", wantText: "open source"},
		{name: "destination", src: reg.host + "/src:v1", dst: gone + "/dst:v1", wantText: "open destination"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Image(t.Context(), tt.src, tt.dst, testOptions(t))
			if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Image() error = %v, want ErrUnreachable from %q", err, tt.wantText)
			}
			t.Logf("error: %v", err)
		})
	}
}

func TestImageTLSRequired(t *testing.T) {
	reg := newTestRegistry(t, nil)
	reg.pushImage(t, "src", "v1", dockerManifestType, gzipLayers(t))
	opts := testOptions(t)
	opts.PlainHTTP = false
	_, err := Image(t.Context(), reg.host+"/src:v1", reg.host+"/dst:v1", opts)
	if err == nil {
		t.Fatal("Image() over plain HTTP without PlainHTTP succeeded")
	}
	t.Logf("error: %v", err)
}

func TestImageBadReference(t *testing.T) {
	opts := testOptions(t)
	for _, tt := range []struct{ src, dst string }{
		{"UPPER/case:v1", "localhost/dst:v1"},
		{"localhost/src:v1", "localhost/dst@sha256:" + strings.Repeat("a", 64)},
	} {
		if _, err := Image(t.Context(), tt.src, tt.dst, opts); err == nil {
			t.Errorf("Image(%q, %q) succeeded", tt.src, tt.dst)
		}
	}
}

// TestImagePrioritizedFilesOfEStargzSource reconverts layers that already are eStargz when files
// are to be prioritized (optimize on an eStargz image): a copy would keep the old order.
func TestImagePrioritizedFilesOfEStargzSource(t *testing.T) {
	reg := newTestRegistry(t, nil)
	layers := sampleLayers(t)
	reg.pushImage(t, "src", "v1", ocispec.MediaTypeImageManifest, layers)
	opts := testOptions(t)
	d, err := Image(t.Context(), reg.host+"/src:v1", reg.host+"/esgz:v1", opts)
	if err != nil {
		t.Fatalf("Image(src) error: %v", err)
	}
	if _, opened := checkConverted(t, reg, "esgz", "v1", d, layers); !opened[0].blob.NoPrefetch {
		t.Fatal("unoptimized conversion has no no-prefetch landmark")
	}
	opts.PrioritizedFiles = []string{"etc/hosts"}
	d, err = Image(t.Context(), reg.host+"/esgz:v1", reg.host+"/opt:v1", opts)
	if err != nil {
		t.Fatalf("Image(esgz) error: %v", err)
	}
	_, opened := checkConverted(t, reg, "opt", "v1", d, layers)
	b := opened[0].blob
	e, ok := opened[0].ref.Lookup("etc/hosts")
	if b.NoPrefetch || b.PrefetchEnd <= 0 || !ok || e.Offset >= b.PrefetchEnd {
		t.Fatalf("layer 0 of the reconverted eStargz image: NoPrefetch %v, PrefetchEnd %d, etc/hosts found %v: want etc/hosts before a prefetch landmark",
			b.NoPrefetch, b.PrefetchEnd, ok)
	}
}
