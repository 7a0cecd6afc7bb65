// SPDX-License-Identifier: Apache-2.0

package store

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
)

func TestCheckContentRange(t *testing.T) {
	tests := []struct {
		h  string
		ok bool
	}{
		{"bytes 10-19/100", true},
		{"bytes 10-19/*", true},
		{"bytes 10-18/100", false},
		{"bytes 0-19/100", false},
		{"bytes 10-19", false},
		{"10-19/100", false},
		{"bytes a-19/100", false},
		{"", false},
	}
	for _, tt := range tests {
		if err := checkContentRange(tt.h, 10, 19); (err == nil) != tt.ok {
			t.Errorf("checkContentRange(%q, 10, 19) = %v, want ok=%v", tt.h, err, tt.ok)
		}
	}
}

// blobEnv is a remoteBlob over the first layer of an image in a registry
// behind a mirror that lacks the blob.
func newBlobEnv(t *testing.T) (*remoteBlob, testutil.Layer, *testutil.Registry, *testutil.Registry) {
	t.Helper()
	regs, ref, layer, primary, mirror := mirrored(t)
	eps, err := regs.Endpoints(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 2 {
		t.Fatalf("%d endpoints, want mirror and primary", len(eps))
	}
	o, err := Options{Registries: regs, backoff: 1}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	desc := LayerDesc{Ref: ref, Digest: layer.Desc.Digest, Size: layer.Desc.Size}
	return newRemoteBlob(ref, desc, eps, o), layer, primary, mirror
}

// mirrored pushes app:v1 (one eStargz layer) to a primary registry and
// returns registries that put an empty mirror before it.
func mirrored(t *testing.T) (*registryauth.Registries, refspec.Reference, testutil.Layer, *testutil.Registry, *testutil.Registry) {
	t.Helper()
	testutil.CheckLeaks(t)
	primary, mirror := testutil.NewRegistry(t), testutil.NewRegistry(t)
	layer := testutil.ESGZLayer(t, testutil.Tar(t, sampleFiles(t, "b")...), testutil.ESGZOptions{})
	primary.Push(t, "app", "v1", testutil.NewImage(t, hostPlatform(), layer))
	conf := filepath.Join(t.TempDir(), "registries.conf")
	data := fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n[[registry.mirror]]\nlocation = %q\ninsecure = true\n", primary.Host, mirror.Host)
	if err := os.WriteFile(conf, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	regs, err := registryauth.New(registryauth.Options{AuthFile: primary.AuthFile(t, "", ""), RegistriesConf: conf,
		RegistriesConfDir: t.TempDir(), CertDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { regs.Close() })
	ref, err := refspec.Parse(primary.Ref("app", "v1"))
	if err != nil {
		t.Fatal(err)
	}
	return regs, ref, layer, primary, mirror
}

func TestRemoteBlobMirrorFallback(t *testing.T) {
	b, layer, primary, mirror := newBlobEnv(t)
	for i := range 3 {
		p := make([]byte, 20)
		off := int64(30 * i)
		if n, err := b.ReadAt(t.Context(), p, off); err != nil || string(p[:n]) != string(layer.Blob[off:off+20]) {
			t.Fatalf("ReadAt(%d) = %d, %v", off, n, err)
		}
	}
	if n := mirror.Count(testutil.Request.IsRange); n != 1 {
		t.Errorf("mirror got %d range requests, want 1 (then the primary is preferred)", n)
	}
	if n := primary.Count(testutil.Request.IsRange); n != 3 {
		t.Errorf("primary got %d range requests, want 3", n)
	}
}

func TestRemoteBlobEnds(t *testing.T) {
	b, layer, _, _ := newBlobEnv(t)
	size := int64(len(layer.Blob))
	p := make([]byte, 100)
	n, err := b.ReadAt(t.Context(), p, size-10)
	if n != 10 || !errors.Is(err, io.EOF) || string(p[:n]) != string(layer.Blob[size-10:]) {
		t.Errorf("ReadAt across the end = %d, %v; want 10, io.EOF", n, err)
	}
	if n, err := b.ReadAt(t.Context(), p, size); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("ReadAt at the end = %d, %v; want 0, io.EOF", n, err)
	}
	if _, err := b.ReadAt(t.Context(), p, -1); err == nil {
		t.Errorf("ReadAt(-1) succeeded")
	}
}

func TestRemoteBlobBadContentRange(t *testing.T) {
	b, _, primary, _ := newBlobEnv(t)
	b.eps = b.eps[1:] // primary only
	primary.Inject(testutil.Fault{Match: func(r *http.Request) bool {
		r.Header.Set("Range", strings.Replace(r.Header.Get("Range"), "=10-", "=11-", 1))
		return false
	}})
	p := make([]byte, 5)
	if _, err := b.ReadAt(t.Context(), p, 10); err == nil || !strings.Contains(err.Error(), "Content-Range") {
		t.Errorf("ReadAt with a wrong Content-Range = %v, want an error naming it", err)
	}
}
