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
	"github.com/stargz-store/stargz-store/registryauth"
)

// sourceEnv is a registrySource for app:v1 in primary, behind a mirror
// that lacks it (newBlobEnv's registries).
func sourceEnv(t *testing.T) (*registrySource, *testutil.Registry, *testutil.Registry) {
	t.Helper()
	regs, ref, _, primary, mirror := mirrored(t)
	eps, err := regs.Endpoints(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return &registrySource{ref: ref, eps: eps}, primary, mirror
}

func TestSourceMirrorThenPrimary(t *testing.T) {
	src, primary, mirror := sourceEnv(t)
	raw, mt, err := src.manifest(t.Context(), "")
	if err != nil {
		t.Fatalf("manifest() = %v", err)
	}
	if !strings.Contains(mt, "manifest") || len(raw) == 0 {
		t.Errorf("manifest() media type %q, %d bytes", mt, len(raw))
	}
	if mirror.Count(testutil.Request.IsManifest) != 1 || primary.Count(testutil.Request.IsManifest) != 1 {
		t.Errorf("manifest requests: mirror %d, primary %d; want 1 each (mirror first)",
			mirror.Count(testutil.Request.IsManifest), primary.Count(testutil.Request.IsManifest))
	}
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

func TestSourceUnauthorized(t *testing.T) {
	src, primary, mirror := sourceEnv(t)
	primary.RequireBasicAuth("alice", "s3cret")
	mirror.RequireBasicAuth("alice", "s3cret")
	_, _, err := src.manifest(t.Context(), "")
	if !errors.Is(err, registryauth.ErrUnauthorized) || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("manifest() = %v, want ErrUnauthorized saying so", err)
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

func TestReadBlobBoundsAndVerifies(t *testing.T) {
	b := []byte(`{"architecture":"amd64"}`)
	d := digest.FromBytes(b)
	if got, err := readBlob(bytes.NewReader(b), d, int64(len(b))); err != nil || !bytes.Equal(got, b) {
		t.Fatalf("readBlob() = %q, %v", got, err)
	}
	if _, err := readBlob(bytes.NewReader(b), d, int64(len(b)-1)); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("readBlob(over the bound) = %v, want too large", err)
	}
	if _, err := readBlob(bytes.NewReader(b), digest.FromString("other"), 1<<20); !errors.Is(err, ErrVerify) {
		t.Errorf("readBlob(other digest) = %v, want ErrVerify", err)
	}
}
