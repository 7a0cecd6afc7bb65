// SPDX-License-Identifier: Apache-2.0

package registryauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/stargz-store/stargz-store/refspec"
)

// maxRedirects bounds how many redirects one request follows (the same
// limit as net/http.Client).
const maxRedirects = 10

// hostState is what all endpoints of one registry host share: the TLS
// transport, whether plain HTTP has proven necessary, and the last
// challenges the host sent.
type hostState struct {
	host     string
	insecure bool
	base     *http.Transport

	// mu guards the fields below.
	mu         sync.Mutex
	useHTTP    bool
	challenges []challenge
}

func (h *hostState) httpOnly() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.useHTTP
}

func (h *hostState) getChallenges() []challenge {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.challenges
}

// setChallenges remembers cs for requests that have not seen a 401 yet.
// The scope parameter is dropped: it names the repository of the request
// that got the 401, and every endpoint asks for its own.
func (h *hostState) setChallenges(cs []challenge) {
	kept := make([]challenge, len(cs))
	for i, c := range cs {
		kept[i] = challenge{scheme: c.scheme, params: make(map[string]string, len(c.params))}
		for k, v := range c.params {
			if k != "scope" {
				kept[i].params[k] = v
			}
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.challenges = kept
}

// authTransport is an Endpoint's RoundTripper. For requests to its
// registry host it answers Basic and Bearer challenges, retries once after
// a 401 with fresh credentials, and falls back from https to http for
// insecure registries. It follows redirects itself, never sends the
// registry's Authorization header to another host, and remembers where
// blob URLs redirect to (redirectCache). Errors carry redacted
// URLs only.
type authTransport struct {
	r         *Registries
	h         *hostState
	redirects redirectCache
	ref       refspec.Reference // the endpoint's reference, for credentials
	scope     string            // repository:<path>:pull
	ns        string            // namespace-proxy "ns" parameter, for the ping

	// credMu guards the fields below: the last resolved credentials, kept
	// for credTTL so that a range read does not re-read auth files (or run
	// a credential helper) every time.
	credMu sync.Mutex
	cred   Credentials
	credAt time.Time
}

// credTTL is how long resolved credentials are reused. A 401 always
// re-resolves, so a `podman login` after a failure applies at once.
const credTTL = time.Minute

// RoundTrip implements http.RoundTripper. The caller's request is not
// modified. A final 401 or 403 from the registry becomes an error wrapping
// ErrUnauthorized (the body is closed); other statuses are returned as they
// are, including those of redirect targets (e.g. 403 for an expired signed
// URL).
func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Host != t.h.host {
		return t.r.send(t.r.plain, req)
	}
	if !cacheableRedirect(req) {
		return t.follow(req)
	}
	key := req.URL.String()
	if loc := t.redirects.get(key, t.r.now()); loc != nil {
		resp, err := t.r.send(t.r.plain, redirectRequest(req, loc))
		if err == nil && resp.StatusCode < 300 {
			return resp, nil
		}
		// Expired or revoked signature, or storage trouble: ask the
		// registry again.
		if err == nil {
			resp.Body.Close()
		}
		t.redirects.drop(key)
	}
	resp, err := t.follow(req)
	if err == nil && resp.StatusCode < 300 && resp.Request != nil && resp.Request.URL.Host != t.h.host {
		t.redirects.put(key, resp.Request.URL, t.r.now())
	}
	return resp, err
}

// follow sends req to the registry and follows redirects. Credentials
// never follow a redirect to another host (redirectRequest drops them),
// and go over plain http only as plainOK allows, decided from the
// caller's request; once a redirect has gone from https to http, no
// later hop carries them.
func (t *authTransport) follow(req *http.Request) (*http.Response, error) {
	plainOK := t.plainOK(req)
	resp, err := t.roundTripRegistry(req, plainOK)
	for hops := 0; err == nil && isRedirect(resp) && (req.Method == http.MethodGet || req.Method == http.MethodHead); hops++ {
		if hops == maxRedirects {
			resp.Body.Close()
			return nil, fmt.Errorf("%s %s: stopped after %d redirects", req.Method, redactURL(req.URL), maxRedirects)
		}
		loc, lerr := resp.Location()
		resp.Body.Close()
		if lerr != nil {
			return nil, fmt.Errorf("%s %s: redirect: %w", req.Method, redactURL(req.URL), lerr)
		}
		if resp.Request != nil && resp.Request.URL.Scheme == "https" && loc.Scheme != "https" {
			plainOK = false // a downgrade: the registry's word is not the user's
		}
		req = redirectRequest(req, loc)
		if loc.Host == t.h.host {
			resp, err = t.roundTripRegistry(req, plainOK)
		} else {
			resp, err = t.r.send(t.r.plain, req)
		}
	}
	return resp, err
}

func isRedirect(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return resp.Header.Get("Location") != ""
	}
	return false
}

// redirectRequest builds the next hop. Authorization and Cookie are never
// copied: the registry's credentials are for the registry, and a signed
// storage URL carries its own.
func redirectRequest(req *http.Request, loc *url.URL) *http.Request {
	next := req.Clone(req.Context())
	u := *loc
	next.URL = &u
	next.Host = ""
	next.Body, next.GetBody, next.ContentLength = nil, nil, 0
	next.Header.Del("Authorization")
	next.Header.Del("Cookie")
	return next
}

// plainOK reports whether credentials may be sent over plain http for
// the caller's request req: only to a registry registries.conf marks
// insecure, or when the caller itself asked for http. Loopback hosts get
// no exception: a remote registry must not be able to send the user's
// credentials to a local port another user may listen on.
func (t *authTransport) plainOK(req *http.Request) bool {
	return t.h.insecure || req.URL.Scheme == "http"
}

// roundTripRegistry sends req to the registry host with authentication and
// one retry after a 401. Over plain http, unless plainOK, it sends no
// credentials at all (a 401 then stays a 401).
func (t *authTransport) roundTripRegistry(orig *http.Request, plainOK bool) (*http.Response, error) {
	ctx := orig.Context()
	req := orig.Clone(ctx)
	req.Header.Del("Authorization") // ours to set
	if t.h.httpOnly() && req.URL.Scheme == "https" {
		req.URL.Scheme = "http"
	}
	if req.URL.Scheme != "https" && !plainOK {
		t.r.log.Debug("plain http after a redirect: no credentials", "url", redactURL(req.URL))
		resp, err := t.sendRegistry(req)
		return t.finish(req, resp, err)
	}
	var tok string
	if cs := t.h.getChallenges(); len(cs) > 0 {
		cred, err := t.credentials(ctx, false)
		if err != nil {
			return nil, err
		}
		if tok, err = t.authorize(req, cs, cred, "", plainOK); err != nil {
			return nil, err
		}
	}
	resp, err := t.sendRegistry(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized || !rewindable(req) {
		return t.finish(req, resp, err)
	}
	// 401: learn the challenges (a 401 without them, as gcr.io sends,
	// means "ask /v2/"), drop the token we used and try once more.
	cs := parseChallenges(resp.Header)
	resp.Body.Close()
	if len(cs) == 0 {
		if cs, err = t.ping(ctx, req.URL.Scheme); err != nil {
			return nil, err
		}
	}
	if len(cs) == 0 {
		return nil, t.statusError(req, http.StatusUnauthorized, "")
	}
	t.h.setChallenges(cs)
	retry, err := rewind(req)
	if err != nil {
		return nil, err
	}
	cred, err := t.credentials(ctx, true)
	if err != nil {
		return nil, err
	}
	if _, err := t.authorize(retry, cs, cred, tok, plainOK); err != nil {
		return nil, err
	}
	resp, err = t.sendRegistry(retry)
	return t.finish(retry, resp, err)
}

// finish turns a final 401/403 into an error wrapping ErrUnauthorized.
func (t *authTransport) finish(req *http.Request, resp *http.Response, err error) (*http.Response, error) {
	if err != nil || (resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden) {
		return resp, err
	}
	code := errorCode(resp.Body)
	resp.Body.Close()
	return nil, t.statusError(req, resp.StatusCode, code)
}

func (t *authTransport) statusError(req *http.Request, status int, code string) error {
	return &StatusError{Op: req.Method, URL: redactURL(req.URL), Status: status, Code: code}
}

// errorCode reads the first registry error code of an error body
// ({"errors":[{"code":"DENIED",…}]}). Messages are not kept: they may echo
// request details.
func errorCode(body io.Reader) string {
	var e struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	if json.NewDecoder(io.LimitReader(body, 16<<10)).Decode(&e) != nil || len(e.Errors) == 0 {
		return ""
	}
	c := e.Errors[0].Code
	if len(c) > 64 || strings.ContainsFunc(c, func(r rune) bool { return r < 'A' || r > 'Z' && r != '_' }) {
		return ""
	}
	return c
}

// credentials returns the endpoint's credentials, resolved again when
// fresh is set or the last answer is older than credTTL, so that runtime
// changes (podman login, the ALS auth helper) apply without a restart.
func (t *authTransport) credentials(ctx context.Context, fresh bool) (Credentials, error) {
	t.credMu.Lock()
	c, at := t.cred, t.credAt
	t.credMu.Unlock()
	if !fresh && !at.IsZero() && t.r.now().Sub(at) < credTTL {
		return c, nil
	}
	c, err := t.r.creds.Resolve(ctx, t.ref)
	if err != nil {
		return Credentials{}, fmt.Errorf("credentials for %s: %w", t.ref.Name(), err)
	}
	t.credMu.Lock()
	t.cred, t.credAt = c, t.r.now()
	t.credMu.Unlock()
	return c, nil
}

// authorize sets req's Authorization header for the first supported
// challenge and returns the bearer token used, if any. stale is a token
// the registry refused; a cached token equal to it is not reused. A
// bearer realm over plain http is refused unless plainOK: the token
// request would carry the credentials, and the token itself, in clear.
func (t *authTransport) authorize(req *http.Request, cs []challenge, cred Credentials, stale string, plainOK bool) (string, error) {
	for _, c := range cs {
		switch c.scheme {
		case "basic":
			if cred.Username != "" || cred.Password != "" {
				req.SetBasicAuth(cred.Username, cred.Password)
			}
			return "", nil
		case "bearer":
			if err := checkRealm(c.params["realm"], plainOK); err != nil {
				return "", fmt.Errorf("%s %s: %w", req.Method, redactURL(req.URL), err)
			}
			scopes := []string{t.scope}
			if s := c.params["scope"]; s != "" && s != t.scope {
				scopes = append(scopes, strings.Fields(s)...)
			}
			tok, err := t.r.token(req.Context(), c, scopes, cred, stale)
			if err != nil {
				return "", err
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			return tok, nil
		}
	}
	return "", nil
}

// checkRealm refuses a bearer realm that is not https, unless plain http
// is allowed for the registry (plainOK).
func checkRealm(realm string, plainOK bool) error {
	u, err := url.Parse(realm)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("bearer realm %q is not an http(s) URL", redactString(realm))
	}
	if u.Scheme == "http" && !plainOK {
		return fmt.Errorf("bearer realm %s is plain http, refused for a registry reached over https "+
			"(mark the registry insecure in registries.conf to allow it)", redactURL(u))
	}
	return nil
}

// sendRegistry sends req to the registry host; for an insecure registry a
// failed https attempt is repeated over plain http, and success there
// switches the host to http for good (c/image pings https, then http).
func (t *authTransport) sendRegistry(req *http.Request) (*http.Response, error) {
	resp, err := t.r.send(t.h.base, req)
	if err == nil || !t.h.insecure || req.URL.Scheme != "https" || req.Context().Err() != nil || !rewindable(req) {
		return resp, err
	}
	retry, rerr := rewind(req)
	if rerr != nil {
		return nil, err
	}
	retry.URL.Scheme = "http"
	resp, herr := t.r.send(t.h.base, retry)
	if herr != nil {
		return nil, fmt.Errorf("%w (plain http: %w)", err, herr)
	}
	t.h.mu.Lock()
	t.h.useHTTP = true
	t.h.mu.Unlock()
	t.r.log.Debug("insecure registry: using plain http", "host", t.h.host)
	req.URL.Scheme = "http" // later hops of this request and the retry use it too
	return resp, nil
}

// ping asks GET /v2/ for the host's challenges.
func (t *authTransport) ping(ctx context.Context, scheme string) ([]challenge, error) {
	u := url.URL{Scheme: scheme, Host: t.h.host, Path: "/v2/"}
	if t.ns != "" {
		u.RawQuery = url.Values{"ns": {t.ns}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := t.sendRegistry(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return parseChallenges(resp.Header), nil
}

// send performs one exchange on rt, logging it at Debug with a redacted URL
// and redacting the URL out of any error.
func (r *Registries) send(rt http.RoundTripper, req *http.Request) (*http.Response, error) {
	if req.Header.Get("User-Agent") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("User-Agent", "stargz-store")
	}
	start := r.now()
	resp, err := rt.RoundTrip(req)
	dur := r.now().Sub(start)
	if err != nil {
		err = fmt.Errorf("%s %s: %w", req.Method, redactURL(req.URL), scrubURLError(err))
		r.log.Debug("http", "op", req.Method, "url", redactURL(req.URL), "dur", dur, "err", err)
		return nil, err
	}
	r.log.Debug("http", "op", req.Method, "url", redactURL(req.URL), "status", resp.StatusCode, "dur", dur)
	return resp, nil
}

// scrubURLError replaces the URL inside a *url.Error (which a proxy or
// nested client may produce) by its redacted form.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: redactString(ue.URL), Err: ue.Err}
	}
	return err
}

func rewindable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

func rewind(req *http.Request) (*http.Request, error) {
	next := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		b, err := req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("%s %s: rewind body: %w", req.Method, redactURL(req.URL), err)
		}
		next.Body = b
	}
	return next, nil
}

// nowOrDefault keeps time handling in one place for token expiry.
func (r *Registries) expired(exp time.Time) bool { return !r.now().Before(exp) }
