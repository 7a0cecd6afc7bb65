// SPDX-License-Identifier: Apache-2.0

package registryauth

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.podman.io/image/v5/pkg/sysregistriesv2"

	"github.com/stargz-store/stargz-store/refspec"
)

// isolate points every location Podman reads credentials and registry
// configuration from into a fresh temporary directory, and returns it.
// Tests using it must not be parallel.
func isolate(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	run := filepath.Join(dir, "run")
	for _, d := range []string{home, run} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("HOME", home)
	t.Setenv("XDG_RUNTIME_DIR", run)
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(home, ".config"))
	t.Setenv("DOCKER_CONFIG", "")
	t.Setenv("REGISTRY_AUTH_FILE", "")
	conf := filepath.Join(dir, "registries.conf")
	writeFile(t, conf, "")
	t.Setenv("CONTAINERS_REGISTRIES_CONF", conf)
	sysregistriesv2.InvalidateCache()
	t.Cleanup(sysregistriesv2.InvalidateCache)
	return dir
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// authJSON renders an auth.json with one entry per key.
func authJSON(t *testing.T, entries map[string][2]string) string {
	t.Helper()
	auths := map[string]map[string]string{}
	for k, up := range entries {
		auths[k] = map[string]string{"auth": basic(up[0], up[1])}
	}
	b, err := json.Marshal(map[string]any{"auths": auths})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func basic(user, pass string) string {
	r, _ := http.NewRequest(http.MethodGet, "http://x", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

// trustServer writes srv's certificate into <certDir>/<host>/ca.crt.
func trustServer(t *testing.T, certDir string, srv *httptest.Server) {
	t.Helper()
	host := strings.TrimPrefix(srv.URL, "https://")
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	writeFile(t, filepath.Join(certDir, host, "ca.crt"), string(b))
}

func mustRef(t *testing.T, s string) refspec.Reference {
	t.Helper()
	r, err := refspec.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func hostOf(srv *httptest.Server) string {
	u, _ := url.Parse(srv.URL)
	return u.Host
}

// tokenAuth is a fake distribution token server plus a middleware that
// requires its tokens, per repository scope.
type tokenAuth struct {
	user, pass string // "" = anonymous tokens are issued
	service    string

	mu      sync.Mutex
	fetches map[string]int    // scope -> token fetches
	valid   map[string]string // token -> scope
	n       int
	posts   int // OAuth2 refresh-token grants
	seenTok []string
}

func newTokenAuth(user, pass string) *tokenAuth {
	return &tokenAuth{user: user, pass: pass, service: "test-registry", fetches: map[string]int{}, valid: map[string]string{}}
}

// ServeToken is the realm.
func (a *tokenAuth) ServeToken(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		_ = r.ParseForm()
		if r.PostForm.Get("grant_type") != "refresh_token" || r.PostForm.Get("refresh_token") != a.pass {
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
			return
		}
		r.Form = r.PostForm
		a.mu.Lock()
		a.posts++
		a.mu.Unlock()
	} else if a.user != "" {
		u, p, ok := r.BasicAuth()
		if !ok || u != a.user || p != a.pass {
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
	}
	if r.Form == nil {
		_ = r.ParseForm()
	}
	scope := strings.Join(r.Form["scope"], " ")
	a.mu.Lock()
	a.n++
	tok := fmt.Sprintf("tok-%d", a.n)
	a.fetches[scope]++
	a.valid[tok] = scope
	a.mu.Unlock()
	key := "token"
	if r.Method == http.MethodPost {
		key = "access_token"
	}
	_ = json.NewEncoder(w).Encode(map[string]any{key: tok, "expires_in": 300})
}

// Require wraps next: requests to /v2/<repo>/… need a token for that repo.
func (a *tokenAuth) Require(realm string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		repo := repoOf(r.URL.Path)
		scope := "repository:" + repo + ":pull"
		tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		a.mu.Lock()
		got, ok := a.valid[tok]
		a.seenTok = append(a.seenTok, tok)
		a.mu.Unlock()
		if !ok || (repo != "" && !strings.Contains(" "+got+" ", " "+scope+" ")) {
			ch := fmt.Sprintf(`Bearer realm=%q,service=%q`, realm, a.service)
			if repo != "" {
				ch += fmt.Sprintf(`,scope=%q`, scope)
			}
			w.Header().Set("WWW-Authenticate", ch)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// expireAll makes the server forget every token (a server-side expiry).
func (a *tokenAuth) expireAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.valid = map[string]string{}
}

func (a *tokenAuth) fetchCount(scope string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.fetches[scope]
}

// repoOf extracts <repo> from /v2/<repo>/(blobs|manifests|tags)/….
func repoOf(p string) string {
	p = strings.TrimPrefix(p, "/v2/")
	for _, k := range []string{"/blobs/", "/manifests/", "/tags/"} {
		if i := strings.LastIndex(p, k); i >= 0 {
			return p[:i]
		}
	}
	return ""
}

// get performs a GET through ep's transport.
func get(ctx context.Context, t *testing.T, ep Endpoint, u string, hdr map[string]string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	return (&http.Client{Transport: ep.Transport}).Do(req)
}
