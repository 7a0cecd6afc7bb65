// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"

	"github.com/stargz-store/stargz-store/cachedir"
	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
)

// maxManifestSize bounds a manifest or index read into memory (as
// containers/image does).
const maxManifestSize = 4 << 20

// manifestSource is what resolving an image needs of a registry.
type manifestSource interface {
	// manifest returns the manifest named by tagOrDigest ("" means the
	// reference's own) and its media type.
	manifest(ctx context.Context, tagOrDigest string) ([]byte, string, error)
	// blob returns blob d (an image config, a TOC blob), at most max
	// bytes, checked against d: a mismatch wraps ErrVerify.
	blob(ctx context.Context, d digest.Digest, max int64) ([]byte, error)
}

// registrySource reads manifests and configs with the store's own
// registry client, the one range requests use: registries.conf mirrors
// first and the primary last, credentials and tokens, TLS and the plain
// http fallback of insecure registries. Sharing it with the range
// requests means a layer's first range request finds the connection open,
// the scheme known and the token fetched; containers/image's docker
// client would ping the registry (https first) on every resolution.
type registrySource struct {
	ref refspec.Reference
	eps []registryauth.Endpoint
}

// sourceOpener returns the manifestSource of a reference.
type sourceOpener func(ctx context.Context, ref refspec.Reference) (manifestSource, error)

// newSource is the Manager's sourceOpener.
func (m *Manager) newSource(ctx context.Context, ref refspec.Reference) (manifestSource, error) {
	eps, err := m.opts.Registries.Endpoints(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("endpoints of %s: %w", ref, err)
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("%s: no registry endpoint", ref)
	}
	var src manifestSource = &registrySource{ref: ref, eps: eps}
	if m.opts.Cache != nil {
		src = &cachedSource{src: src, ref: ref, cache: m.opts.Cache}
	}
	return src, nil
}

// manifest tries the endpoints in order and returns the first manifest
// one serves. When every endpoint fails, the primary's error decides:
// a mirror that lacks the image does not make it missing.
func (s *registrySource) manifest(ctx context.Context, tagOrDigest string) ([]byte, string, error) {
	var errs []error
	for _, ep := range s.eps {
		raw, mt, err := getManifest(ctx, ep, tagOrDigest)
		if err == nil {
			return raw, mt, nil
		}
		err = explain(err)
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep.Host, err))
	}
	return nil, "", primaryError(fmt.Sprintf("fetch manifest of %s", s.ref), errs)
}

// primaryError reports the failures of every endpoint; only the
// primary's (the last) is wrapped, so that its kind (ErrNotFound,
// ErrUnauthorized) decides: a mirror that lacks an image does not make
// it missing.
func primaryError(what string, errs []error) error {
	last := errs[len(errs)-1]
	if len(errs) == 1 {
		return fmt.Errorf("%s: %w", what, last)
	}
	return fmt.Errorf("%s: %w (mirrors: %v)", what, last, errors.Join(errs[:len(errs)-1]...))
}

func getManifest(ctx context.Context, ep registryauth.Endpoint, tagOrDigest string) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep.ManifestURL(tagOrDigest), nil)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Accept", strings.Join(manifest.DefaultRequestedManifestMIMETypes, ", "))
	resp, err := (&http.Client{Transport: ep.Transport}).Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", registryStatus(resp)
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestSize+1))
	if err != nil {
		return nil, "", fmt.Errorf("read manifest: %w", err)
	}
	if len(raw) > maxManifestSize {
		return nil, "", fmt.Errorf("manifest larger than %d bytes", maxManifestSize)
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt == "" || mt == "text/plain" || mt == "application/json" || mt == "application/octet-stream" {
		mt = manifest.GuessMIMEType(raw)
	}
	return raw, manifest.NormalizedMIMEType(mt), nil
}

// blob reads blob d from the first endpoint that serves it.
func (s *registrySource) blob(ctx context.Context, d digest.Digest, max int64) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("blob %q: %w", d, err)
	}
	var errs []error
	for _, ep := range s.eps {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep.BlobURL(d), nil)
		if err != nil {
			return nil, err
		}
		resp, err := (&http.Client{Transport: ep.Transport}).Do(req)
		if err == nil && resp.StatusCode == http.StatusOK {
			defer resp.Body.Close()
			return readBlob(resp.Body, d, max)
		}
		if err == nil {
			err = registryStatus(resp)
			resp.Body.Close()
		}
		err = explain(err)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		errs = append(errs, fmt.Errorf("%s: %w", ep.Host, err))
	}
	return nil, primaryError(fmt.Sprintf("fetch blob %s of %s", d, s.ref), errs)
}

// readBlob reads blob d from r, at most max bytes, and checks it
// against d.
func readBlob(r io.Reader, d digest.Digest, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", d, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("blob %s is larger than %d bytes", d, max)
	}
	if d.Algorithm().FromBytes(b) != d {
		return nil, fmt.Errorf("blob %s: %w", d, errors.Join(ErrVerify, errors.New("content does not match its digest")))
	}
	return b, nil
}

// explain says in words what an authorization failure is.
func explain(err error) error {
	if errors.Is(err, registryauth.ErrUnauthorized) {
		return fmt.Errorf("authentication failed (check the credentials for this registry): %w", err)
	}
	return err
}

// registryStatus turns a registry's error answer into an error of the
// store's kinds: 401/403 wrap registryauth.ErrUnauthorized, 404 wraps
// ErrNotFound.
func registryStatus(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	err := fmt.Errorf("status %s: %s", resp.Status, strings.TrimSpace(string(body)))
	switch resp.StatusCode {
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("%w: %w", registryauth.ErrUnauthorized, err)
	case http.StatusNotFound:
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// fetchImage resolves ref through the store's own registry client.
func (m *Manager) fetchImage(ctx context.Context, ref refspec.Reference) (*image, error) {
	src, err := m.newSource(ctx, ref)
	if err != nil {
		return nil, err
	}
	var tails map[digest.Digest]*tailFetch
	img, err := fetchImage(ctx, src, m.opts.Registries.SystemContext(), ref, func(infos []types.BlobInfo) {
		tails = m.fetchTails(ref, infos)
	})
	if err != nil {
		return nil, err
	}
	img.tails = tails
	return img, nil
}

// cachedSource keeps what src serves by digest in the disk cache:
// configs, TOC blobs, and manifests (named by digest, or fetched by tag
// and then stored under their digest). A manifest asked for by tag always
// goes to the registry: tags move. What comes from the cache is verified
// against its digest again, so a damaged entry costs a fetch, never a
// wrong answer.
type cachedSource struct {
	src   manifestSource
	ref   refspec.Reference
	cache *cachedir.Dir
}

func (s *cachedSource) manifest(ctx context.Context, tagOrDigest string) ([]byte, string, error) {
	d, err := digest.Parse(tagOrDigest)
	if tagOrDigest == "" && s.ref.Digest() != "" {
		d, err = s.ref.Digest(), nil
	}
	if err == nil {
		if raw, ok := s.cached(d); ok {
			return raw, manifest.GuessMIMEType(raw), nil
		}
	}
	raw, mt, err := s.src.manifest(ctx, tagOrDigest)
	if err != nil {
		return nil, "", err
	}
	s.keep(ctx, digest.FromBytes(raw), raw)
	return raw, mt, nil
}

func (s *cachedSource) blob(ctx context.Context, d digest.Digest, max int64) ([]byte, error) {
	if b, ok := s.cached(d); ok && int64(len(b)) <= max {
		return b, nil
	}
	b, err := s.src.blob(ctx, d, max)
	if err != nil {
		return nil, err
	}
	s.keep(ctx, d, b)
	return b, nil
}

// cached returns the entry for d if it is there and matches d.
func (s *cachedSource) cached(d digest.Digest) ([]byte, bool) {
	if d.Validate() != nil {
		return nil, false
	}
	b, err := s.cache.ReadAll(d)
	if err != nil || d.Algorithm().FromBytes(b) != d {
		return nil, false
	}
	return b, true
}

// keep stores b under d; a failure only loses the cache entry.
func (s *cachedSource) keep(ctx context.Context, d digest.Digest, b []byte) {
	_ = s.cache.PutCold(ctx, d, b)
}
