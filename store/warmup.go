// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"io"
	"net/http"
	"strings"

	"go.podman.io/image/v5/manifest"

	"github.com/stargz-store/stargz-store/refspec"
)

// goWarmUp runs warmUp for ref on a goroutine the Manager owns, bounded
// by the resolve timeout, unless Close began.
func (m *Manager) goWarmUp(ref refspec.Reference) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.wg.Go(func() {
		ctx, cancel := context.WithTimeout(m.life, m.opts.ResolveTimeout)
		defer cancel()
		m.warmUp(ctx, ref)
	})
}

// warmUp readies the store's own connection to ref's registry while
// containers/image resolves ref, so that the layer's first range request
// does not pay for it afterwards: it sends HEAD for the manifest through
// the endpoint the range requests will use first. That request learns the
// scheme of an insecure registry (one failed https attempt), opens the
// keep-alive connection, and gets the pull token. A HEAD of a manifest is
// not a pull (Docker Hub does not count it). Failures only cost the
// warm-up: the range requests try again on their own.
func (m *Manager) warmUp(ctx context.Context, ref refspec.Reference) {
	eps, err := m.opts.Registries.Endpoints(ctx, ref)
	if err != nil || len(eps) == 0 {
		return
	}
	ep := eps[0]
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, ep.ManifestURL(""), nil)
	if err != nil {
		return
	}
	req.Header.Set("Accept", strings.Join(manifest.DefaultRequestedManifestMIMETypes, ", "))
	resp, err := (&http.Client{Transport: ep.Transport}).Do(req)
	if err != nil {
		m.log.Debug("registry warm-up failed", "host", ep.Host, "err", err)
		return
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}
