// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"fmt"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/types"

	"github.com/stargz-store/stargz-store/cachedir"
	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/store/remote"
)

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
// registry client (remote.Repository), the one range requests use:
// registries.conf mirrors first and the primary last, credentials and
// tokens, TLS and the plain http fallback of insecure registries.
// Sharing it with the range requests means a layer's first range request
// finds the connection open, the scheme known and the token fetched;
// containers/image's docker client would ping the registry (https first)
// on every resolution. Its errors are of the store's classes
// (registryError).
type registrySource struct {
	ref  refspec.Reference
	repo *remote.Repository
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
	var src manifestSource = &registrySource{ref: ref, repo: remote.NewRepository(ref, eps, m.opts.remoteOptions())}
	if m.opts.Cache != nil {
		src = &cachedSource{src: src, ref: ref, cache: m.opts.Cache}
	}
	return src, nil
}

// manifest returns the first manifest an endpoint serves. When every
// endpoint fails, the primary's error decides: a mirror that lacks the
// image does not make it missing.
func (s *registrySource) manifest(ctx context.Context, tagOrDigest string) ([]byte, string, error) {
	raw, mt, err := s.repo.GetManifest(ctx, tagOrDigest)
	return raw, mt, registryError(err)
}

// blob reads blob d from the first endpoint that serves it.
func (s *registrySource) blob(ctx context.Context, d digest.Digest, max int64) ([]byte, error) {
	b, err := s.repo.GetBlob(ctx, d, max)
	return b, registryError(err)
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
		if raw, ok := s.cached(d, remote.MaxManifestSize); ok {
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
