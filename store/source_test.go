// SPDX-License-Identifier: Apache-2.0

package store

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/store/remote"
)

// sourceEnv is a registrySource for app:v1 (one eStargz layer) in a
// primary registry, behind a mirror that lacks it.
func sourceEnv(t *testing.T) (*registrySource, *testutil.Registry, *testutil.Registry) {
	t.Helper()
	layer := testutil.ESGZLayer(t, testutil.Tar(t, sampleFiles(t, "b")...), testutil.ESGZOptions{})
	regs, ref, primary, mirror := testutil.Mirrored(t, testutil.NewImage(t, hostPlatform(), layer))
	eps, err := regs.Endpoints(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return &registrySource{ref: ref, repo: remote.NewRepository(ref, eps, remote.Options{})}, primary, mirror
}

func TestSourceMissingEverywhere(t *testing.T) {
	src, _, _ := sourceEnv(t)
	_, _, err := src.manifest(t.Context(), "nope")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("manifest(missing tag) = %v, want ErrNotFound", err)
	}
}

// TestSourcePrimaryErrorDecides: a mirror's 404 does not make an image
// missing when the primary failed otherwise.
func TestSourcePrimaryErrorDecides(t *testing.T) {
	src, primary, _ := sourceEnv(t)
	primary.Inject(testutil.Fault{Match: func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/manifests/") }, Status: http.StatusServiceUnavailable})
	_, _, err := src.manifest(t.Context(), "")
	if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("manifest() = %v, want the primary's 503, not ErrNotFound", err)
	}
}

func TestSourceBlobVerifiedByCaller(t *testing.T) {
	src, _, _ := sourceEnv(t)
	raw, mt, err := src.manifest(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	layers, err := readInstance(t.Context(), src, src.ref, raw, mt, nil)
	if err != nil || len(layers) != 1 || layers[0].desc.DiffID == "" {
		t.Fatalf("readInstance() = %v, %v; want one layer with its DiffID from the config", layers, err)
	}
}

// TestCachedSource: manifests by digest and configs come from the disk
// cache the second time; a manifest by tag always asks the registry; a
// damaged entry is fetched again.
func TestCachedSource(t *testing.T) {
	reg, primary, _ := sourceEnv(t)
	root := t.TempDir()
	cache := openCache(t, root, 1<<30)
	src := &cachedSource{src: reg, ref: reg.ref, cache: cache}
	raw, mt, err := src.manifest(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := src.manifest(t.Context(), ""); err != nil {
		t.Fatal(err)
	}
	if n := primary.Count(testutil.Request.IsManifest); n != 2 {
		t.Errorf("manifest by tag twice: %d registry requests, want 2 (tags move)", n)
	}
	d := digest.FromBytes(raw)
	got, gotMT, err := src.manifest(t.Context(), d.String())
	if err != nil || !bytes.Equal(got, raw) || gotMT != mt {
		t.Errorf("manifest by digest = %d bytes, %q, %v; want the cached one, %q", len(got), gotMT, err, mt)
	}
	if n := primary.Count(testutil.Request.IsManifest); n != 2 {
		t.Errorf("manifest by digest went to the registry (%d requests)", n)
	}
	for range 2 {
		if _, err := readInstance(t.Context(), src, reg.ref, raw, mt, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := primary.Count(testutil.Request.IsBlob); n != 1 {
		t.Errorf("config read twice: %d blob requests, want 1", n)
	}
	// Damage the cached manifest between two runs: it is fetched again,
	// right.
	cache.Close()
	damageEntry(t, root, d)
	src = &cachedSource{src: reg, ref: reg.ref, cache: openCache(t, root, 1<<30)}
	got, _, err = src.manifest(t.Context(), d.String())
	if err != nil || !bytes.Equal(got, raw) {
		t.Errorf("manifest by digest over a damaged entry = %q, %v", got, err)
	}
	if n := primary.Count(testutil.Request.IsManifest); n != 3 {
		t.Errorf("manifest by digest over a damaged entry: %d registry requests in all, want 3", n)
	}
}
