// SPDX-License-Identifier: Apache-2.0

// Package testutil holds helpers shared by the tests of several packages:
// an in-process registry with request counting and fault injection,
// eStargz and gzip image builders, a log recorder and a goroutine leak
// check. It is imported by tests only.
package testutil

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"log"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Registry is go-containerregistry's in-process registry behind a
// middleware that records every request and can inject faults. Safe for
// concurrent use.
type Registry struct {
	// Host is host:port of the server, URL is http://Host.
	Host, URL string

	backend http.Handler

	// mu guards the fields below.
	mu     sync.Mutex
	reqs   []*Request // recorded when they arrive, completed as answered
	faults []*Fault
	user   string // Basic credentials required, if user != ""
	pass   string
	multi  MultiRange
}

// MultiRange says how the registry answers a blob GET with several ranges.
type MultiRange int

const (
	// MultiRangeFirst is ggcr's own behaviour: it serves the first range
	// only (with a 206 for that range).
	MultiRangeFirst MultiRange = iota
	// MultiRangeServe answers 206 multipart/byteranges, one part per range,
	// as most registries and CDNs do.
	MultiRangeServe
	// MultiRangeRefuse answers 400, as some object stores do.
	MultiRangeRefuse
)

// SetMultiRange sets how requests with several ranges are answered.
func (r *Registry) SetMultiRange(m MultiRange) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.multi = m
}

// Request is one request the registry answered.
type Request struct {
	Method string
	Path   string
	Range  string // the Range header as received
	Status int
	Bytes  int64 // body bytes sent
}

// IsBlob reports whether r is a GET of a blob.
func (r Request) IsBlob() bool {
	return r.Method == http.MethodGet && strings.Contains(r.Path, "/blobs/sha")
}

// IsRange reports whether r is a GET of a blob with a Range header.
func (r Request) IsRange() bool { return r.IsBlob() && r.Range != "" }

// IsManifest reports whether r is a GET of a manifest (by tag or digest).
func (r Request) IsManifest() bool {
	return r.Method == http.MethodGet && strings.Contains(r.Path, "/manifests/")
}

// Fault changes the answers to matching requests.
type Fault struct {
	// Match selects the requests; nil means every blob GET.
	Match func(*http.Request) bool
	// Times is how many matching requests to affect; 0 means all.
	Times int
	// Status, if set, answers with this status and an empty body.
	Status int
	// IgnoreRange serves the request as if it had no Range header (200
	// with the whole blob), like a registry without range support.
	IgnoreRange bool
	// Truncate > 0 ends the body after this many bytes (the connection is
	// closed, so the client sees a short body).
	Truncate int
	// Flip > 0 flips the bits of the body byte at index Flip-1.
	Flip int
	// Stall, if not nil, holds the request until it is closed or the
	// client gives up, then answers normally (or not at all).
	Stall <-chan struct{}

	used int
}

// NewRegistry starts a registry for the test and stops it at cleanup.
func NewRegistry(t testing.TB) *Registry {
	t.Helper()
	r := &Registry{backend: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.URL = srv.URL
	r.Host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// Inject adds a fault. Faults are consulted in the order added; the first
// matching one with uses left applies.
func (r *Registry) Inject(f Fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = append(r.faults, &f)
}

// ClearFaults removes every fault.
func (r *Registry) ClearFaults() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults = nil
}

// RequireBasicAuth makes the registry answer 401 with a Basic challenge
// to requests without these credentials.
func (r *Registry) RequireBasicAuth(user, pass string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.user, r.pass = user, pass
}

// Requests returns the requests answered so far.
func (r *Registry) Requests() []Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Request, len(r.reqs))
	for i, q := range r.reqs {
		out[i] = *q
	}
	return out
}

// Count returns how many answered requests satisfy match.
func (r *Registry) Count(match func(Request) bool) int {
	n := 0
	for _, q := range r.Requests() {
		if match(q) {
			n++
		}
	}
	return n
}

// Bytes returns the body bytes sent for requests satisfying match.
func (r *Registry) Bytes(match func(Request) bool) int64 {
	var n int64
	for _, q := range r.Requests() {
		if match(q) {
			n += q.Bytes
		}
	}
	return n
}

// Reset forgets the requests recorded so far.
func (r *Registry) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reqs = nil
}

// Ref returns the reference host:port/repo:tag.
func (r *Registry) Ref(repo, tag string) string { return r.Host + "/" + repo + ":" + tag }

// RegistriesConf writes a registries.conf that marks this registry
// insecure (plain HTTP) and returns its path, for registryauth.Options and
// containers/image.
func (r *Registry) RegistriesConf(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "registries.conf")
	conf := fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", r.Host)
	if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// AuthFile writes a containers auth.json with the given credentials for
// this registry (none if user is "") and returns its path.
func (r *Registry) AuthFile(t testing.TB, user, pass string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "auth.json")
	data := `{"auths":{}}`
	if user != "" {
		enc := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
		data = fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, r.Host, enc)
	}
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (r *Registry) serve(w http.ResponseWriter, req *http.Request) {
	// Record on arrival and fill in the answer as it is written: a client
	// may have read the whole answer before this handler returns.
	rec := &Request{Method: req.Method, Path: req.URL.Path, Range: req.Header.Get("Range")}
	cw := &faultWriter{ResponseWriter: w, r: r, rec: rec}
	r.mu.Lock()
	r.reqs = append(r.reqs, rec)
	user, pass, multi := r.user, r.pass, r.multi
	f := r.faultFor(req)
	r.mu.Unlock()
	if u, p, ok := req.BasicAuth(); user != "" && (!ok || u != user || p != pass) {
		w.Header().Set("WWW-Authenticate", `Basic realm="testutil"`)
		cw.WriteHeader(http.StatusUnauthorized)
		return
	}
	if f != nil {
		if f.Status != 0 {
			cw.WriteHeader(f.Status)
			return
		}
		if f.Stall != nil {
			select {
			case <-f.Stall:
			case <-req.Context().Done():
				return
			}
		}
		if f.IgnoreRange {
			req.Header.Del("Range")
		}
		cw.truncate, cw.flip = f.Truncate, f.Flip
	}
	if rng := req.Header.Get("Range"); strings.Contains(rng, ",") && multi != MultiRangeFirst && rec.IsBlob() {
		r.serveMulti(cw, req, rng, multi)
		return
	}
	r.backend.ServeHTTP(cw, req)
}

// serveMulti answers a multi-range blob GET: 400, or 206 with one
// multipart/byteranges part per range.
func (r *Registry) serveMulti(w http.ResponseWriter, req *http.Request, rng string, multi MultiRange) {
	if multi == MultiRangeRefuse {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	whole := req.Clone(req.Context())
	whole.Header.Del("Range")
	rec := httptest.NewRecorder()
	r.backend.ServeHTTP(rec, whole)
	if rec.Code != http.StatusOK {
		w.WriteHeader(rec.Code)
		return
	}
	blob := rec.Body.Bytes()
	type part struct{ first, last int64 }
	var parts []part
	for _, s := range strings.Split(strings.TrimPrefix(rng, "bytes="), ",") {
		var p part
		if _, err := fmt.Sscanf(s, "%d-%d", &p.first, &p.last); err != nil || p.first > p.last || p.last >= int64(len(blob)) {
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		}
		parts = append(parts, p)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, p := range parts {
		pw, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":  {"application/octet-stream"},
			"Content-Range": {fmt.Sprintf("bytes %d-%d/%d", p.first, p.last, len(blob))},
		})
		if err != nil {
			panic(err)
		}
		pw.Write(blob[p.first : p.last+1])
	}
	mw.Close()
	w.Header().Set("Content-Type", "multipart/byteranges; boundary="+mw.Boundary())
	w.Header().Set("Content-Length", fmt.Sprint(body.Len()))
	w.WriteHeader(http.StatusPartialContent)
	w.Write(body.Bytes())
}

// faultFor returns the fault for req, counting its use. r.mu must be held.
func (r *Registry) faultFor(req *http.Request) *Fault {
	for _, f := range r.faults {
		match := f.Match
		if match == nil {
			match = func(q *http.Request) bool { return (Request{Method: q.Method, Path: q.URL.Path}).IsBlob() }
		}
		if (f.Times == 0 || f.used < f.Times) && match(req) {
			f.used++
			return f
		}
	}
	return nil
}

// faultWriter records the status and body size and applies body faults.
type faultWriter struct {
	http.ResponseWriter
	r        *Registry
	rec      *Request // guarded by r.mu
	status   int
	n        int64
	truncate int
	flip     int
}

func (w *faultWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
		w.r.mu.Lock()
		w.rec.Status = code
		w.r.mu.Unlock()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *faultWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	full := len(p)
	if w.truncate > 0 {
		left := int64(w.truncate) - w.n
		if left <= 0 {
			return 0, io.ErrClosedPipe
		}
		p = p[:min(int64(len(p)), left)]
	}
	if i := int64(w.flip-1) - w.n; w.flip > 0 && i >= 0 && i < int64(len(p)) {
		p = bytes.Clone(p)
		p[i] ^= 0xff
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	w.r.mu.Lock()
	w.rec.Bytes = w.n
	w.r.mu.Unlock()
	if err == nil && n < full {
		err = io.ErrClosedPipe
	}
	return n, err
}

// put sends a request straight to the backend, bypassing faults,
// authentication and the request log.
func (r *Registry) put(t testing.TB, method, path, contentType string, body []byte) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	r.backend.ServeHTTP(w, req)
	resp := w.Result()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: status %s: %s", method, path, resp.Status, w.Body.String())
	}
	return resp
}
