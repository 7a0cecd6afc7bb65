// SPDX-License-Identifier: Apache-2.0

package remote

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

// repoEnv is a Repository for app:v1 in primary, behind a mirror that
// lacks it (newBlobEnv's registries).
func repoEnv(t *testing.T) (*Repository, *testutil.Registry, *testutil.Registry) {
	t.Helper()
	regs, ref, _, primary, mirror := mirrored(t)
	eps, err := regs.Endpoints(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return NewRepository(ref, eps, Options{}), primary, mirror
}

func TestRepositoryMirrorThenPrimary(t *testing.T) {
	repo, primary, mirror := repoEnv(t)
	raw, mt, err := repo.GetManifest(t.Context(), "")
	if err != nil {
		t.Fatalf("GetManifest() = %v", err)
	}
	if !strings.Contains(mt, "manifest") || len(raw) == 0 {
		t.Errorf("GetManifest() media type %q, %d bytes", mt, len(raw))
	}
	if mirror.Count(testutil.Request.IsManifest) != 1 || primary.Count(testutil.Request.IsManifest) != 1 {
		t.Errorf("manifest requests: mirror %d, primary %d; want 1 each (mirror first)",
			mirror.Count(testutil.Request.IsManifest), primary.Count(testutil.Request.IsManifest))
	}
}

func TestRepositoryMissingEverywhere(t *testing.T) {
	repo, _, _ := repoEnv(t)
	_, _, err := repo.GetManifest(t.Context(), "nope")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetManifest(missing tag) = %v, want ErrNotFound", err)
	}
}

// TestRepositoryPrimaryErrorDecides: a mirror's 404 does not make an
// image missing when the primary failed otherwise.
func TestRepositoryPrimaryErrorDecides(t *testing.T) {
	repo, primary, _ := repoEnv(t)
	primary.Inject(testutil.Fault{Match: func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/manifests/") }, Status: http.StatusServiceUnavailable})
	_, _, err := repo.GetManifest(t.Context(), "")
	if err == nil || errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "503") {
		t.Fatalf("GetManifest() = %v, want the primary's 503, not ErrNotFound", err)
	}
}

func TestRepositoryUnauthorized(t *testing.T) {
	repo, primary, mirror := repoEnv(t)
	primary.RequireBasicAuth("alice", "s3cret")
	mirror.RequireBasicAuth("alice", "s3cret")
	_, _, err := repo.GetManifest(t.Context(), "")
	if !errors.Is(err, registryauth.ErrUnauthorized) || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("GetManifest() = %v, want ErrUnauthorized saying so", err)
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
