// SPDX-License-Identifier: Apache-2.0

package registryauth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	digest "github.com/opencontainers/go-digest"
)

// pushBlob uploads content to the ggcr registry handler directly
// (monolithic upload), bypassing the auth middleware.
func pushBlob(t *testing.T, reg http.Handler, repo string, content []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(content)
	req := httptest.NewRequest(http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), bytes.NewReader(content))
	rec := httptest.NewRecorder()
	reg.ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated {
		t.Fatalf("push blob to %s: status %d: %s", repo, rec.Code, rec.Body)
	}
	return d
}

// bearerRegistry is a ggcr registry behind a token server on one TLS host,
// trusted through a certs.d directory.
type bearerRegistry struct {
	srv  *httptest.Server
	auth *tokenAuth
	reg  http.Handler
	host string
}

func newBearerRegistry(t *testing.T, certDir, user, pass string) *bearerRegistry {
	t.Helper()
	b := &bearerRegistry{auth: newTokenAuth(user, pass), reg: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	mux := http.NewServeMux()
	var realm string
	mux.HandleFunc("/token", b.auth.ServeToken)
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.auth.Require(realm, b.reg).ServeHTTP(w, r)
	}))
	b.srv = httptest.NewTLSServer(mux)
	t.Cleanup(b.srv.Close)
	realm = b.srv.URL + "/token"
	b.host = hostOf(b.srv)
	trustServer(t, certDir, b.srv)
	return b
}

func TestBearerTokenCachePerScope(t *testing.T) {
	dir := isolate(t)
	certDir := filepath.Join(dir, "certs.d")
	b := newBearerRegistry(t, certDir, "alice", "s3cret-pass")
	authFile := filepath.Join(dir, "auth.json")
	writeFile(t, authFile, authJSON(t, map[string][2]string{b.host: {"alice", "s3cret-pass"}}))
	t.Setenv("REGISTRY_AUTH_FILE", authFile)

	content := bytes.Repeat([]byte("0123456789"), 1000)
	da := pushBlob(t, b.reg, "foo/a", content)
	db := pushBlob(t, b.reg, "foo/b", content)

	r, err := New(Options{CertDir: certDir})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := r.SystemContext().AuthFilePath; got != authFile {
		t.Errorf("SystemContext().AuthFilePath = %q, want %q (REGISTRY_AUTH_FILE)", got, authFile)
	}
	ctx := t.Context()
	epA := endpoint(t, r, b.host+"/foo/a:latest")
	epB := endpoint(t, r, b.host+"/foo/b:latest")
	if epA.Host != b.host || epA.Insecure {
		t.Fatalf("endpoint = %+v, want host %s, secure", epA, b.host)
	}
	wantURL := "https://" + b.host + "/v2/foo/a/blobs/" + da.String()
	if got := epA.BlobURL(da); got != wantURL {
		t.Errorf("BlobURL = %q, want %q", got, wantURL)
	}

	readRange := func(ep Endpoint, d digest.Digest, off, n int) {
		t.Helper()
		resp, err := get(ctx, t, ep, ep.BlobURL(d), map[string]string{"Range": fmt.Sprintf("bytes=%d-%d", off, off+n-1)})
		if err != nil {
			t.Errorf("GET %s: %v", d, err)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, content[off:off+n]) {
			t.Errorf("GET range %d+%d: status %d, body %q", off, n, resp.StatusCode, body)
		}
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() { readRange(epA, da, i*100, 50) })
	}
	wg.Wait()
	readRange(epB, db, 10, 10)
	readRange(epA, da, 0, 10)

	scopeA, scopeB := "repository:foo/a:pull", "repository:foo/b:pull"
	if n := b.auth.fetchCount(scopeA); n != 1 {
		t.Errorf("token fetches for %s = %d, want 1 (cached)", scopeA, n)
	}
	if n := b.auth.fetchCount(scopeB); n != 1 {
		t.Errorf("token fetches for %s = %d, want 1", scopeB, n)
	}

	// Server-side expiry: the next request gets a 401 and refreshes once.
	b.auth.expireAll()
	readRange(epA, da, 5, 5)
	readRange(epA, da, 6, 5)
	if n := b.auth.fetchCount(scopeA); n != 2 {
		t.Errorf("token fetches for %s after server expiry = %d, want 2", scopeA, n)
	}

	// Client-side expiry (expires_in 300s): a fresh token without a 401.
	r.now = func() time.Time { return time.Now().Add(10 * time.Minute) }
	readRange(epA, da, 7, 5)
	if n := b.auth.fetchCount(scopeA); n != 3 {
		t.Errorf("token fetches for %s after client expiry = %d, want 3", scopeA, n)
	}
}

func endpoint(t *testing.T, r *Registries, ref string) Endpoint {
	t.Helper()
	eps, err := r.Endpoints(t.Context(), mustRef(t, ref))
	if err != nil {
		t.Fatalf("Endpoints(%s): %v", ref, err)
	}
	if len(eps) != 1 {
		t.Fatalf("Endpoints(%s) = %d endpoints, want 1", ref, len(eps))
	}
	return eps[0]
}

func TestBearerWrongPasswordIsUnauthorized(t *testing.T) {
	dir := isolate(t)
	certDir := filepath.Join(dir, "certs.d")
	b := newBearerRegistry(t, certDir, "alice", "right")
	d := pushBlob(t, b.reg, "foo/a", []byte("x"))
	mem := &Memory{}
	mem.Set(b.host, Credentials{Username: "alice", Password: "wrong-hunter2"})
	r, err := New(Options{CertDir: certDir, Credentials: mem})
	if err != nil {
		t.Fatal(err)
	}
	ep := endpoint(t, r, b.host+"/foo/a:latest")
	_, err = get(t.Context(), t, ep, ep.BlobURL(d), nil)
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("GET with a wrong password: %v, want ErrUnauthorized", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error leaks the password: %v", err)
	}
}

func TestBearerOAuth2IdentityToken(t *testing.T) {
	dir := isolate(t)
	certDir := filepath.Join(dir, "certs.d")
	b := newBearerRegistry(t, certDir, "", "refresh-abc")
	d := pushBlob(t, b.reg, "foo/a", []byte("hello"))
	r, err := New(Options{CertDir: certDir, Credentials: Static{b.host + "/foo": {IdentityToken: "refresh-abc"}}})
	if err != nil {
		t.Fatal(err)
	}
	ep := endpoint(t, r, b.host+"/foo/a:latest")
	resp, err := get(t.Context(), t, ep, ep.BlobURL(d), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" {
		t.Errorf("body = %q, want hello", body)
	}
	if b.auth.posts != 1 {
		t.Errorf("OAuth2 grants = %d, want 1", b.auth.posts)
	}
}

// basicServer requires Basic user:pass on /v2/ and redirects blob GETs to
// storage with a signed URL.
func basicServer(t *testing.T, user, pass string, storage *httptest.Server) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if strings.Contains(r.URL.Path, "/blobs/") && storage != nil {
			http.Redirect(w, r, storage.URL+"/blob?sig=SECRETSIG&X-Amz-Credential=AKIASECRET", http.StatusTemporaryRedirect)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestBasicAuthRedirectAndInsecureFallback(t *testing.T) {
	dir := isolate(t)
	var mu sync.Mutex
	var storageAuth, storageRange []string
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		storageAuth = append(storageAuth, r.Header.Get("Authorization"))
		storageRange = append(storageRange, r.Header.Get("Range"))
		mu.Unlock()
		w.WriteHeader(http.StatusPartialContent)
		_, _ = io.WriteString(w, "blob-bytes")
	}))
	defer storage.Close()
	srv := basicServer(t, "bob", "pa55word-secret", storage)
	host := hostOf(srv)
	conf := filepath.Join(dir, "registries.conf")
	writeFile(t, conf, fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", host))
	writeFile(t, filepath.Join(dir, "home/.config/containers/auth.json"),
		authJSON(t, map[string][2]string{host: {"bob", "pa55word-secret"}}))
	var logs bytes.Buffer
	r, err := New(Options{RegistriesConf: conf, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil {
		t.Fatal(err)
	}
	ep := endpoint(t, r, host+"/x/y:1")
	if !ep.Insecure {
		t.Fatalf("endpoint %s not insecure", host)
	}
	d := digest.FromString("z")
	resp, err := get(t.Context(), t, ep, ep.BlobURL(d), map[string]string{"Range": "bytes=0-9"})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(body) != "blob-bytes" {
		t.Errorf("GET = %d %q, want 206 blob-bytes", resp.StatusCode, body)
	}
	if got := ep.BlobURL(d); !strings.HasPrefix(got, "http://") {
		t.Errorf("BlobURL after https failed = %q, want http://", got)
	}
	mu.Lock()
	if len(storageAuth) != 1 || storageAuth[0] != "" {
		t.Errorf("storage saw Authorization %q, want none", storageAuth)
	}
	if len(storageRange) != 1 || storageRange[0] != "bytes=0-9" {
		t.Errorf("storage saw Range %q, want bytes=0-9", storageRange)
	}
	mu.Unlock()

	// The storage host goes away: the error must not leak the signature.
	storage.Close()
	_, err = get(t.Context(), t, ep, ep.BlobURL(d), nil)
	if err == nil {
		t.Fatal("GET with storage down: no error")
	}
	for _, secret := range []string{"SECRETSIG", "AKIASECRET", "pa55word-secret", basic("bob", "pa55word-secret")} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error leaks %q: %v", secret, err)
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs leak %q:\n%s", secret, logs.String())
		}
	}
}

func TestBasicAuthWrongPassword(t *testing.T) {
	dir := isolate(t)
	srv := basicServer(t, "bob", "right", nil)
	host := hostOf(srv)
	conf := filepath.Join(dir, "registries.conf")
	writeFile(t, conf, fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", host))
	r, err := New(Options{RegistriesConf: conf, Credentials: Static{host: {Username: "bob", Password: "wrong-pw-xyz"}}})
	if err != nil {
		t.Fatal(err)
	}
	ep := endpoint(t, r, host+"/x/y:1")
	_, err = get(t.Context(), t, ep, ep.ManifestURL(""), nil)
	var se *StatusError
	if !errors.Is(err, ErrUnauthorized) || !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
		t.Fatalf("GET = %v, want a 401 StatusError wrapping ErrUnauthorized", err)
	}
	if strings.Contains(err.Error(), "wrong-pw-xyz") {
		t.Errorf("error leaks the password: %v", err)
	}
}

func TestConcurrentTokenFetchIsShared(t *testing.T) {
	dir := isolate(t)
	certDir := filepath.Join(dir, "certs.d")
	b := newBearerRegistry(t, certDir, "", "")
	d := pushBlob(t, b.reg, "foo/a", []byte("x"))
	r, err := New(Options{CertDir: certDir})
	if err != nil {
		t.Fatal(err)
	}
	ep := endpoint(t, r, b.host+"/foo/a@"+d.String()) // digest refs work too
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			resp, err := get(ctx, t, ep, ep.BlobURL(d), nil)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
		})
	}
	wg.Wait()
	if n := b.auth.fetchCount("repository:foo/a:pull"); n != 1 {
		t.Errorf("anonymous token fetches = %d, want 1", n)
	}
}

func TestBlobRedirectIsCached(t *testing.T) {
	dir := isolate(t)
	var mu sync.Mutex
	var registryHits, storageHits int
	refuse := false
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		storageHits++
		if refuse || r.URL.Query().Get("gen") != fmt.Sprint(registryHits) {
			refuse = false
			http.Error(w, "signature expired", http.StatusForbidden)
			return
		}
		_, _ = io.WriteString(w, "data")
	}))
	defer storage.Close()
	reg := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		registryHits++
		n := registryHits
		mu.Unlock()
		http.Redirect(w, r, fmt.Sprintf("%s/b?gen=%d", storage.URL, n), http.StatusTemporaryRedirect)
	}))
	defer reg.Close()
	certDir := filepath.Join(dir, "certs.d")
	trustServer(t, certDir, reg)
	r, err := New(Options{CertDir: certDir})
	if err != nil {
		t.Fatal(err)
	}
	ep := endpoint(t, r, hostOf(reg)+"/x/y:1")
	d := digest.FromString("blob")
	fetch := func() {
		t.Helper()
		resp, err := get(t.Context(), t, ep, ep.BlobURL(d), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "data" {
			t.Fatalf("GET = %d %q, want 200 data", resp.StatusCode, body)
		}
	}
	counts := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return registryHits, storageHits
	}
	for range 3 {
		fetch()
	}
	if reg, sto := counts(); reg != 1 || sto != 3 {
		t.Errorf("after 3 reads: registry %d, storage %d hits, want 1 and 3 (redirect cached)", reg, sto)
	}
	// The signed URL is refused: re-resolve through the registry once.
	mu.Lock()
	refuse = true
	mu.Unlock()
	fetch()
	if reg, sto := counts(); reg != 2 || sto != 5 {
		t.Errorf("after a refused URL: registry %d, storage %d hits, want 2 and 5", reg, sto)
	}
	// The cache expires.
	r.now = func() time.Time { return time.Now().Add(redirectTTL + time.Second) }
	fetch()
	if reg, _ := counts(); reg != 3 {
		t.Errorf("after expiry: registry %d hits, want 3", reg)
	}
}

func TestStalledTokenServerHonoursContextAndClose(t *testing.T) {
	dir := isolate(t)
	tokenReqGone := make(chan struct{})
	var once sync.Once
	var realm string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			<-r.Context().Done() // stall until the client gives up
			once.Do(func() { close(tokenReqGone) })
			return
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf("Bearer realm=%q,service=s", realm))
		w.WriteHeader(http.StatusUnauthorized)
	}))
	defer srv.Close()
	realm = srv.URL + "/token"
	certDir := filepath.Join(dir, "certs.d")
	trustServer(t, certDir, srv)
	r, err := New(Options{CertDir: certDir})
	if err != nil {
		t.Fatal(err)
	}
	ep := endpoint(t, r, hostOf(srv)+"/x/y:1")
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = get(ctx, t, ep, ep.BlobURL(digest.FromString("b")), nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("GET with a stalled token server = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("GET returned after %v, want promptly", d)
	}
	// The detached fetch is still running; Close cancels it.
	r.Close()
	select {
	case <-tokenReqGone:
	case <-time.After(10 * time.Second):
		t.Error("token fetch still running after Close")
	}
}
