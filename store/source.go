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
// client would ping the registry (https first) on every resolution. Its
// requests go through the endpoint loop of attempt.go, as range requests
// do: a stall is caught within FetchTimeout, transient failures are
// retried within the caller's deadline (the resolve timeout).
type registrySource struct {
	ref    refspec.Reference
	eps    []registryauth.Endpoint
	policy retryPolicy // the zero value: one attempt per endpoint
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
	var src manifestSource = &registrySource{ref: ref, eps: eps, policy: newRetryPolicy(m.opts)}
	if m.opts.Cache != nil {
		src = &cachedSource{src: src, ref: ref, cache: m.opts.Cache}
	}
	return src, nil
}

// manifest returns the first manifest an endpoint serves. When every
// endpoint fails, the primary's error decides: a mirror that lacks the
// image does not make it missing.
func (s *registrySource) manifest(ctx context.Context, tagOrDigest string) ([]byte, string, error) {
	var raw []byte
	var mt string
	err := s.get(ctx, fmt.Sprintf("fetch manifest of %s", s.ref), func(ctx context.Context, w *watchdog, ep registryauth.Endpoint) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep.ManifestURL(tagOrDigest), nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", strings.Join(manifest.DefaultRequestedManifestMIMETypes, ", "))
		return send(w, ep, req, func(resp *http.Response) (err error) {
			raw, mt, err = readManifest(resp)
			return err
		})
	})
	return raw, mt, err
}

// blob reads blob d from the first endpoint that serves it.
func (s *registrySource) blob(ctx context.Context, d digest.Digest, max int64) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("blob %q: %w", d, err)
	}
	var b []byte
	err := s.get(ctx, fmt.Sprintf("fetch blob %s of %s", d, s.ref), func(ctx context.Context, w *watchdog, ep registryauth.Endpoint) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep.BlobURL(d), nil)
		if err != nil {
			return err
		}
		return send(w, ep, req, func(resp *http.Response) (err error) {
			b, err = readBlob(resp.Body, d, max)
			return err
		})
	})
	return b, err
}

// get runs fn through the endpoint loop, mirrors first.
func (s *registrySource) get(ctx context.Context, what string, fn func(ctx context.Context, w *watchdog, ep registryauth.Endpoint) error) error {
	i, errs, cerr := s.policy.try(ctx, len(s.eps), 0, nil, func(ctx context.Context, w *watchdog, i int) error {
		return fn(ctx, w, s.eps[i])
	})
	switch {
	case i >= 0:
		return nil
	case cerr != nil:
		return fmt.Errorf("%s: %w", what, cerr)
	}
	var all []error
	for j, err := range errs {
		if err != nil {
			all = append(all, fmt.Errorf("%s: %w", s.eps[j].Host, explain(err)))
		}
	}
	return primaryError(what, all)
}

// send sends req to ep and hands a 200 answer to read. Errors are
// classified for the endpoint loop: a failed exchange or body, and 5xx,
// 429 and 408 answers, are transient; the rest (401, 404, a body that is
// too big or does not match its digest) are not.
func send(w *watchdog, ep registryauth.Endpoint, req *http.Request, read func(*http.Response) error) error {
	w.start()
	resp, err := (&http.Client{Transport: ep.Transport}).Do(req)
	if err != nil {
		return &attemptError{err: err, retry: !errors.Is(err, registryauth.ErrUnauthorized)}
	}
	w.progress()
	resp.Body = w.body(resp.Body)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &attemptError{err: registryStatus(resp), retry: retryable(resp.StatusCode)}
	}
	body := &errTracker{r: resp.Body}
	resp.Body = io.NopCloser(body)
	if err := read(resp); err != nil {
		return &attemptError{err: err, retry: body.err != nil}
	}
	return nil
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

// readManifest reads a manifest answer, at most maxManifestSize bytes,
// and its media type.
func readManifest(resp *http.Response) ([]byte, string, error) {
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
// goes to the registry: tags move. The cache checks each entry against
// its digest before its first read in the process, so a damaged entry
// costs a fetch, never a wrong answer.
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
		if raw, ok := s.cached(d, maxManifestSize); ok {
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
	if b, ok := s.cached(d, max); ok {
		return b, nil
	}
	b, err := s.src.blob(ctx, d, max)
	if err != nil {
		return nil, err
	}
	s.keep(ctx, d, b)
	return b, nil
}

// cached returns the entry for d if it is there and at most max bytes:
// the cache has checked that it matches d.
func (s *cachedSource) cached(d digest.Digest, max int64) ([]byte, bool) {
	if d.Validate() != nil {
		return nil, false
	}
	b, err := s.cache.ReadAll(cachedir.Content(d), max)
	return b, err == nil
}

// keep stores b under d; a failure only loses the cache entry.
func (s *cachedSource) keep(ctx context.Context, d digest.Digest, b []byte) {
	_ = s.cache.Put(ctx, cachedir.Content(d), b)
}
