// SPDX-License-Identifier: Apache-2.0

package remote

import (
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/manifest"

	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
)

// MaxManifestSize bounds a manifest or index read into memory (as
// containers/image does).
const MaxManifestSize = 4 << 20

// Repository reads the manifests and small blobs (image configs, TOC
// blobs) of one image reference with whole GETs: registries.conf mirrors
// first and the primary last, with the endpoints' credentials, tokens,
// TLS and plain-http fallback. Its requests go through the endpoint loop
// as range reads do: a stall is caught within FetchTimeout, transient
// failures are retried within the caller's deadline. Unlike a Blob it
// starts every request at the first mirror and counts against no host
// limit. Safe for concurrent use.
type Repository struct {
	endpoints
}

// NewRepository returns the repository of ref at eps (mirrors first, the
// primary last).
func NewRepository(ref refspec.Reference, eps []registryauth.Endpoint, o Options) *Repository {
	return &Repository{endpoints: newEndpoints(ref, eps, nil, o)}
}

// GetManifest returns the manifest named by tagOrDigest ("" means the
// reference's own), at most MaxManifestSize bytes, and its media type,
// from the first endpoint that serves it. Errors wrap ErrNotFound or
// registryauth.ErrUnauthorized when the primary said so.
func (r *Repository) GetManifest(ctx context.Context, tagOrDigest string) ([]byte, string, error) {
	var raw []byte
	var mt string
	err := r.get(ctx, "manifest request", fmt.Sprintf("fetch manifest of %s", r.ref), func(ctx context.Context, ep *endpoint) (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep.ManifestURL(tagOrDigest), nil)
		if err == nil {
			req.Header.Set("Accept", strings.Join(manifest.DefaultRequestedManifestMIMETypes, ", "))
		}
		return req, err
	}, func(resp *http.Response) (err error) {
		raw, mt, err = readManifest(resp)
		return err
	})
	return raw, mt, err
}

// GetBlob returns blob d, at most max bytes, checked against d (a
// mismatch wraps ErrVerify), from the first endpoint that serves it.
func (r *Repository) GetBlob(ctx context.Context, d digest.Digest, max int64) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("blob %q: %w", d, err)
	}
	var b []byte
	err := r.get(ctx, "blob request", fmt.Sprintf("fetch blob %s of %s", d, r.ref), func(ctx context.Context, ep *endpoint) (*http.Request, error) {
		return http.NewRequestWithContext(ctx, http.MethodGet, ep.BlobURL(d), nil)
	}, func(resp *http.Response) (err error) {
		b, err = readBlob(resp.Body, d, max)
		return err
	})
	return b, err
}

// get sends the GET newReq makes for each endpoint through the endpoint
// loop, mirrors first, and hands the first 200 answer to read. A body that
// breaks off is transient; an answer read refuses (too big, not matching
// its digest) is not.
func (r *Repository) get(ctx context.Context, op, what string, newReq func(context.Context, *endpoint) (*http.Request, error), read func(*http.Response) error) error {
	_, err := r.do(ctx, op, what, 0, func(ctx context.Context, w *watchdog, ep *endpoint) error {
		req, err := newReq(ctx, ep)
		if err != nil {
			return err
		}
		resp, err := exchange(w, ep, req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return statusError(resp)
		}
		body := &errTracker{r: resp.Body}
		resp.Body = io.NopCloser(body)
		if err := read(resp); err != nil {
			return &attemptError{err: err, retry: body.err != nil}
		}
		return nil
	})
	return err
}

// readManifest reads a manifest answer, at most MaxManifestSize bytes,
// and its media type.
func readManifest(resp *http.Response) ([]byte, string, error) {
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestSize+1))
	if err != nil {
		return nil, "", fmt.Errorf("read manifest: %w", err)
	}
	if len(raw) > MaxManifestSize {
		return nil, "", fmt.Errorf("manifest larger than %d bytes", MaxManifestSize)
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
		return nil, fmt.Errorf("blob %s: %w", d, ErrVerify)
	}
	return b, nil
}
