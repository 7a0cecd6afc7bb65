// SPDX-License-Identifier: Apache-2.0

package remote

import (
	"sync"
	"time"

	"github.com/stargz-store/stargz-store/internal/limit"
)

// Host is what the Blobs read from one registry host share: the bound on
// their requests in flight, and what is known of the host's outages.
// Safe for concurrent use; use NewHost.
type Host struct {
	requests *limit.Limiter
	outage   outage
}

// NewHost returns a Host that lets at most n range requests be in flight
// at once (at least 1), a quarter of them (at least 1) Background ones.
func NewHost(n int) *Host {
	return &Host{requests: limit.New(int64(n), int64(n/4))}
}

// outage remembers that a fetch gave up on a host after ReadTimeout of
// transient failures. For outageMemo after that, fetches from the host
// make a single attempt bounded by probeTimeout (a probe) instead of
// retrying for ReadTimeout: the kernel answers a failed read by reading
// the same pages again at once (a failed readahead is followed by a
// synchronous read, and some programs fall back from sendfile to read),
// which would otherwise make an application wait two or three times
// ReadTimeout for its EIO, and every read would wait ReadTimeout while
// the registry is down. A failed probe renews the memo, an answer ends
// it. The zero value is a host with no outage; a nil *outage never has
// one. Safe for concurrent use.
type outage struct {
	// mu guards the field below.
	mu     sync.Mutex
	downAt time.Time // when an outage was last noted; zero after an answer
}

// outageMemo is how long a noted outage turns fetches into probes, and
// probeTimeout the bound on a probe's progress (FetchTimeout if less).
const (
	outageMemo   = 10 * time.Second
	probeTimeout = 2 * time.Second
)

// noteDown records that a fetch gave up on the host, and reports
// whether the host was up until now.
func (o *outage) noteDown() bool {
	if o == nil {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	was := o.downAt.IsZero() || time.Since(o.downAt) >= outageMemo
	o.downAt = time.Now()
	return was
}

// noteUp records that the host answered, and reports whether an outage
// ended.
func (o *outage) noteUp() bool {
	if o == nil {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	was := !o.downAt.IsZero()
	o.downAt = time.Time{}
	return was
}

// down reports whether an outage was noted less than outageMemo ago.
func (o *outage) down() bool {
	if o == nil {
		return false
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return !o.downAt.IsZero() && time.Since(o.downAt) < outageMemo
}
