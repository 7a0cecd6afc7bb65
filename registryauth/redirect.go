// SPDX-License-Identifier: Apache-2.0

package registryauth

import (
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

const (
	// redirectTTL is how long a blob's storage URL is reused. Signed URLs
	// usually live 15-20 minutes (distribution's S3 driver: 20); a refused
	// one is re-resolved anyway.
	redirectTTL = 5 * time.Minute
	// maxRedirectCache bounds the cache of one endpoint; expired entries
	// are dropped when it is full.
	maxRedirectCache = 1024
)

// redirectCache remembers where a blob URL redirects to (blob storage,
// usually a signed URL), so that the many range reads of one lazily pulled
// layer skip the registry round trip, as stargz-snapshotter's resolver
// does. Only blobs are cached: they are content-addressed. The zero value
// is ready to use.
type redirectCache struct {
	// mu guards the field below.
	mu sync.Mutex
	m  map[string]redirectEntry
}

type redirectEntry struct {
	loc     *url.URL
	expires time.Time
}

func cacheableRedirect(req *http.Request) bool {
	return (req.Method == http.MethodGet || req.Method == http.MethodHead) && strings.Contains(req.URL.Path, "/blobs/")
}

func (c *redirectCache) get(key string, now time.Time) *url.URL {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok || !now.Before(e.expires) {
		return nil
	}
	return e.loc
}

func (c *redirectCache) put(key string, loc *url.URL, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]redirectEntry{}
	}
	if len(c.m) >= maxRedirectCache {
		for k, e := range c.m {
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= maxRedirectCache {
			clear(c.m)
		}
	}
	c.m[key] = redirectEntry{loc: loc, expires: now.Add(redirectTTL)}
}

func (c *redirectCache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, key)
}
