// SPDX-License-Identifier: Apache-2.0

package faultproxy

import (
	"context"
	"io"
	"net/http"
	"strings"
)

// ServeHTTP forwards r to the registry, injecting the current fault if r
// matches it.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, release, inject := p.pick(r)
	if !inject {
		p.forward(w, r, Fault{}, nil)
		return
	}
	p.log.Debug("inject", "mode", f.Mode, "method", r.Method, "path", r.URL.Path, "range", r.Header.Get("Range"))
	switch f.Mode {
	case ModeStatus:
		w.WriteHeader(cmp(f.Status, http.StatusServiceUnavailable))
		io.WriteString(w, "injected by faultproxy\n")
	case ModeIgnoreRange:
		r.Header.Del("Range")
		p.forward(w, r, Fault{}, nil)
	case ModeBadMulti:
		p.badMulti(w, r, cmpMulti(f.Multi))
	default:
		p.forward(w, r, f, release)
	}
}

func cmp(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

func cmpMulti(m Multi) Multi {
	if m == "" {
		return MultiDupHole
	}
	return m
}

// pick counts r and decides whether the current fault applies to it.
func (p *Proxy) pick(r *http.Request) (Fault, chan struct{}, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stats.Requests++
	defer p.changedLocked()
	isRange := isBlob(r) && r.Header.Get("Range") != ""
	if isRange {
		p.stats.Ranges++
	}
	f := p.fault
	if f.Mode == "" || !matches(f.Match, r) {
		return f, nil, false
	}
	if f.Mode == ModeBadMulti && !strings.Contains(r.Header.Get("Range"), ",") {
		return f, nil, false
	}
	p.matched++
	if (f.Every > 1 && p.matched%f.Every != 0) || (f.Times > 0 && p.injected >= f.Times) {
		return f, nil, false
	}
	p.injected++
	p.stats.Injected++
	return f, p.release, true
}

func isBlob(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha")
}

func matches(m Match, r *http.Request) bool {
	switch m {
	case MatchAll:
		return true
	case MatchBlob:
		return isBlob(r)
	case MatchManifest:
		return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/")
	default:
		return isBlob(r) && r.Header.Get("Range") != ""
	}
}

// hopHeaders are not forwarded (RFC 9110 §7.6.1).
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// backendRequest is r addressed to the registry.
func (p *Proxy) backendRequest(ctx context.Context, r *http.Request) (*http.Request, error) {
	u := *p.backend
	u.Path, u.RawPath, u.RawQuery = r.URL.Path, r.URL.RawPath, r.URL.RawQuery
	out, err := http.NewRequestWithContext(ctx, r.Method, u.String(), r.Body)
	if err != nil {
		return nil, err
	}
	out.Header = r.Header.Clone()
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	out.ContentLength = r.ContentLength
	return out, nil
}

// forward sends r to the registry and copies the answer back, applying a
// body fault (ModeReset, ModeTruncate, ModeStall) after f.After bytes.
func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, f Fault, release chan struct{}) {
	out, err := p.backendRequest(r.Context(), r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	for _, h := range hopHeaders {
		w.Header().Del(h)
	}
	w.WriteHeader(resp.StatusCode)
	if f.Mode == "" {
		io.Copy(w, resp.Body)
		return
	}
	if _, err := io.CopyN(w, resp.Body, f.After); err != nil {
		return
	}
	rc := http.NewResponseController(w)
	rc.Flush()
	switch f.Mode {
	case ModeStall:
		select {
		case <-release:
			io.Copy(w, resp.Body)
		case <-r.Context().Done():
		case <-p.done:
		}
	case ModeReset, ModeTruncate:
		c, _, err := rc.Hijack()
		if err != nil {
			return
		}
		if gc, ok := c.(*gateConn); ok && f.Mode == ModeReset {
			gc.reset()
			return
		}
		c.Close()
	}
}
