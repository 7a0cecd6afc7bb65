// SPDX-License-Identifier: Apache-2.0

package store_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"runtime"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/stargz-store/stargz-store/convert"
	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
	"github.com/stargz-store/stargz-store/store"
)

// TestExternalTOC converts an image with `convert --external-toc` (and once more keeping the
// DiffIDs) into an in-process registry and reads it lazily through the store: the layers are
// found by both names, their files read back, and only ranges of the blobs are fetched.
func TestExternalTOC(t *testing.T) {
	for _, keep := range []bool{false, true} {
		name := "external"
		if keep {
			name = "keep-diff-id"
		}
		t.Run(name, func(t *testing.T) {
			testutil.CheckLeaks(t)
			reg := testutil.NewRegistry(t)
			big := bytes.Repeat([]byte("0123456789abcdef"), 20000)
			files := []testutil.File{{Name: "etc/"}, {Name: "etc/hostname", Data: "external\n"},
				{Name: "bin/"}, {Name: "bin/big", Data: string(big)}, {Name: "bin/link", Link: "big"}}
			src := testutil.NewImage(t, ocispec.Platform{OS: "linux", Architecture: "amd64"},
				testutil.GzipLayer(t, testutil.Tar(t, files...)),
				testutil.GzipLayer(t, testutil.Tar(t, testutil.File{Name: "second", Data: "two\n"})))
			reg.Push(t, "src", "v1", src)

			regs := newRegistries(t, reg)
			_, err := convert.Image(t.Context(), reg.Ref("src", "v1"), reg.Ref("dst", "v1"), convert.Options{
				SystemContext: regs.SystemContext(), PlainHTTP: true, ChunkSize: 64 << 10,
				ExternalTOC: true, KeepDiffID: keep, TempDir: t.TempDir(),
			})
			if err != nil {
				t.Fatalf("convert.Image: %v", err)
			}
			m, err := store.New(store.Options{Registries: regs})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			ref, err := refspec.Parse(reg.Ref("dst", "v1"))
			if err != nil {
				t.Fatal(err)
			}
			man := fetchManifest(t, reg, "dst", "v1")
			for i, l := range man.Layers {
				if keep && l.Annotations["containerd.io/snapshot/stargz/toc.digest"] == "" {
					t.Fatalf("layer %d has no TOC digest", i)
				}
				la, err := m.Layer(t.Context(), ref, l.Digest)
				if err != nil {
					t.Fatalf("Layer(blob digest of layer %d): %v", i, err)
				}
				lb, err := m.Layer(t.Context(), ref, digest.Digest(l.Annotations["containerd.io/snapshot/stargz/toc.digest"]))
				if err != nil || lb != la {
					t.Fatalf("Layer(TOC digest of layer %d) = %v, %v; want the same layer", i, lb, err)
				}
			}
			l, _ := m.Layer(t.Context(), ref, man.Layers[0].Digest)
			if got := readAll(t, l, "bin/big"); !bytes.Equal(got, big) {
				t.Errorf("bin/big: %d bytes, not the source's %d", len(got), len(big))
			}
			if got := readAll(t, l, "etc/hostname"); string(got) != "external\n" {
				t.Errorf("etc/hostname = %q", got)
			}
			if e, ok := l.Index().Lookup("bin/link"); !ok || e.LinkName != "big" {
				t.Errorf("bin/link: %+v, %v", e, ok)
			}
			full := reg.Count(func(r testutil.Request) bool {
				return r.IsBlob() && !r.IsRange() && r.Path == "/v2/dst/blobs/"+man.Layers[0].Digest.String()
			})
			if full != 0 {
				t.Errorf("the store downloaded the whole blob %d times", full)
			}
		})
	}
}

// TestExternalTOCIndex converts a two-platform index with external TOCs (one TOC image for
// both) and serves the layers of both platforms lazily.
func TestExternalTOCIndex(t *testing.T) {
	testutil.CheckLeaks(t)
	reg := testutil.NewRegistry(t)
	var imgs []*testutil.Image
	for _, arch := range []string{runtime.GOARCH, "s390x"} {
		if arch == "s390x" && runtime.GOARCH == "s390x" {
			arch = "arm64"
		}
		imgs = append(imgs, testutil.NewImage(t, ocispec.Platform{OS: "linux", Architecture: arch},
			testutil.GzipLayer(t, testutil.Tar(t, testutil.File{Name: "arch", Data: arch + "\n"}))))
	}
	reg.PushIndex(t, "src", "v1", imgs...)
	regs := newRegistries(t, reg)
	if _, err := convert.Image(t.Context(), reg.Ref("src", "v1"), reg.Ref("dst", "v1"), convert.Options{
		SystemContext: regs.SystemContext(), PlainHTTP: true, ExternalTOC: true, TempDir: t.TempDir(),
	}); err != nil {
		t.Fatalf("convert.Image: %v", err)
	}
	m, err := store.New(store.Options{Registries: regs})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ref, _ := refspec.Parse(reg.Ref("dst", "v1"))
	var idx ocispec.Index
	getJSON(t, reg, "/v2/dst/manifests/v1", ocispec.MediaTypeImageIndex, &idx)
	if len(idx.Manifests) != 2 {
		t.Fatalf("converted index has %d manifests", len(idx.Manifests))
	}
	for _, d := range idx.Manifests {
		man := fetchManifest(t, reg, "dst", d.Digest.String())
		l, err := m.Layer(t.Context(), ref, man.Layers[0].Digest)
		if err != nil {
			t.Fatalf("Layer(%s layer) = %v", d.Platform.Architecture, err)
		}
		if got := string(readAll(t, l, "arch")); got != d.Platform.Architecture+"\n" {
			t.Errorf("%s: arch = %q", d.Platform.Architecture, got)
		}
	}
}

// TestExternalTOCMissing serves nothing lazily from an external-TOC image whose TOC image is
// gone: the layers are not lazy, so storage pulls them.
func TestExternalTOCMissing(t *testing.T) {
	testutil.CheckLeaks(t)
	reg := testutil.NewRegistry(t)
	src := testutil.NewImage(t, ocispec.Platform{OS: "linux", Architecture: "amd64"},
		testutil.GzipLayer(t, testutil.Tar(t, testutil.File{Name: "a", Data: "a\n"})))
	reg.Push(t, "src", "v1", src)
	regs := newRegistries(t, reg)
	if _, err := convert.Image(t.Context(), reg.Ref("src", "v1"), reg.Ref("dst", "v1"), convert.Options{
		SystemContext: regs.SystemContext(), PlainHTTP: true, ExternalTOC: true, TempDir: t.TempDir(),
	}); err != nil {
		t.Fatalf("convert.Image: %v", err)
	}
	reg.Inject(testutil.Fault{Match: func(r *http.Request) bool { return r.URL.Path == "/v2/dst/manifests/v1-esgztoc" }, Status: 404})
	m, err := store.New(store.Options{Registries: regs})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ref, _ := refspec.Parse(reg.Ref("dst", "v1"))
	man := fetchManifest(t, reg, "dst", "v1")
	if _, err := m.Layer(t.Context(), ref, man.Layers[0].Digest); !errors.Is(err, store.ErrNotLazy) {
		t.Errorf("Layer = %v, want ErrNotLazy", err)
	}
}

func newRegistries(t *testing.T, reg *testutil.Registry) *registryauth.Registries {
	t.Helper()
	regs, err := registryauth.New(registryauth.Options{
		AuthFile:          reg.AuthFile(t, "", ""),
		RegistriesConf:    reg.RegistriesConf(t),
		RegistriesConfDir: t.TempDir(),
		CertDir:           t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { regs.Close() })
	return regs
}

func readAll(t *testing.T, l *store.Layer, name string) []byte {
	t.Helper()
	e, ok := l.Index().Lookup(name)
	if !ok {
		t.Fatalf("no %s", name)
	}
	buf := make([]byte, e.Size)
	n, err := l.ReadAt(t.Context(), e, buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("read %s: %v", name, err)
	}
	return buf[:n]
}

func fetchManifest(t *testing.T, reg *testutil.Registry, repo, tag string) ocispec.Manifest {
	t.Helper()
	var m ocispec.Manifest
	getJSON(t, reg, "/v2/"+repo+"/manifests/"+tag, ocispec.MediaTypeImageManifest, &m)
	return m
}

func getJSON(t *testing.T, reg *testutil.Registry, path, accept string, v any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, reg.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", path, resp.Status, err)
	}
}
