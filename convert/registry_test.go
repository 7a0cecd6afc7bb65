// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.podman.io/image/v5/types"
)

// testRegistry is an in-process registry served over plain HTTP on 127.0.0.1.
type testRegistry struct {
	host string // host:port
	srv  *httptest.Server
}

// newTestRegistry starts a ggcr registry. wrap, if not nil, decorates its handler (auth, faults).
func newTestRegistry(t *testing.T, wrap func(http.Handler) http.Handler) *testRegistry {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &testRegistry{host: strings.TrimPrefix(srv.URL, "http://"), srv: srv}
}

// testOptions isolates containers/image from the host's registries.conf, auth files and
// certificates.
func testOptions(t *testing.T) Options {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "registries.conf"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return Options{
		SystemContext: &types.SystemContext{
			SystemRegistriesConfPath:    filepath.Join(dir, "registries.conf"),
			SystemRegistriesConfDirPath: filepath.Join(dir, "registries.conf.d"),
			RegistriesDirPath:           filepath.Join(dir, "registries.d"),
			AuthFilePath:                filepath.Join(dir, "auth.json"),
			DockerPerHostCertDirPath:    filepath.Join(dir, "certs.d"),
		},
		PlainHTTP: true,
		TempDir:   t.TempDir(),
	}
}

func (r *testRegistry) url(path string) string { return r.srv.URL + "/v2/" + path }

// pushBlob uploads b monolithically into repo and returns its descriptor.
func (r *testRegistry) pushBlob(t *testing.T, repo, mediaType string, b []byte) ocispec.Descriptor {
	t.Helper()
	d := digest.FromBytes(b)
	res, err := http.Post(r.url(repo+"/blobs/uploads/?digest="+d.String()), "application/octet-stream", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("push blob %s: %s", d, res.Status)
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

// pushManifest stores a manifest (or index) under tag, which may also be a digest.
func (r *testRegistry) pushManifest(t *testing.T, repo, tag, mediaType string, m any) ocispec.Descriptor {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPut, r.url(repo+"/manifests/"+tag), bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", mediaType)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		t.Fatalf("push manifest %s:%s: %s", repo, tag, res.Status)
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
}

// get fetches a path under /v2/; ok is false on 404.
func (r *testRegistry) get(t *testing.T, path string) (body []byte, ok bool) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, r.url(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", strings.Join([]string{ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
		"application/vnd.docker.distribution.manifest.v2+json"}, ", "))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err = io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	switch res.StatusCode {
	case http.StatusOK:
		return body, true
	case http.StatusNotFound:
		return nil, false
	}
	t.Fatalf("GET %s: %s", path, res.Status)
	return nil, false
}

// tarEntry is one member of a test layer.
type tarEntry struct {
	name, body, link string
	typ              byte // tar.TypeReg when 0
}

func makeTar(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: 0o644,
			ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		switch e.typ {
		case 0, tar.TypeReg:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		case tar.TypeDir:
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

// testLayer is a source layer: its tar and how it is stored.
type testLayer struct {
	tar         []byte
	blob        []byte
	mediaType   string
	annotations map[string]string
}

// pushImage pushes layers and a config into repo:tag with a manifest of manifestType (OCI or
// Docker schema 2) and returns the manifest descriptor.
func (r *testRegistry) pushImage(t *testing.T, repo, tag, manifestType string, layers []testLayer) ocispec.Descriptor {
	t.Helper()
	cfg := ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config:   ocispec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/sh"}},
		RootFS:   ocispec.RootFS{Type: "layers"},
	}
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: manifestType}
	for i, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, digest.FromBytes(l.tar))
		cfg.History = append(cfg.History, ocispec.History{CreatedBy: fmt.Sprintf("layer %d", i)})
		desc := r.pushBlob(t, repo, l.mediaType, l.blob)
		desc.Annotations = l.annotations
		m.Layers = append(m.Layers, desc)
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfgType := ocispec.MediaTypeImageConfig
	if manifestType != ocispec.MediaTypeImageManifest {
		cfgType = "application/vnd.docker.container.image.v1+json"
	}
	m.Config = r.pushBlob(t, repo, cfgType, cfgJSON)
	return r.pushManifest(t, repo, tag, manifestType, m)
}
