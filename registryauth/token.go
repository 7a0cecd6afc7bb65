// SPDX-License-Identifier: Apache-2.0

package registryauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const (
	// minTokenLifetime is what a token without (or with a tiny) expires_in
	// is assumed to live, as in the distribution token spec and c/image.
	minTokenLifetime = 60 * time.Second
	// tokenFetchTimeout bounds a token fetch, which runs detached from the
	// caller that started it because other requests wait for it too.
	tokenFetchTimeout = 60 * time.Second
	maxTokenBody      = 1 << 20
)

// tokenKey identifies a cached bearer token: one per realm, service, scope
// set and credentials (identified by a hash, never the secret itself).
type tokenKey struct {
	realm, service, scope, cred string
}

func (k tokenKey) String() string {
	return k.realm + "\x00" + k.service + "\x00" + k.scope + "\x00" + k.cred
}

type tokenEntry struct {
	token   string
	expires time.Time
}

func credID(c Credentials) string {
	if c.IsZero() {
		return ""
	}
	h := sha256.Sum256([]byte(c.Username + "\x00" + c.Password + "\x00" + c.IdentityToken))
	return hex.EncodeToString(h[:8])
}

// token returns a bearer token for challenge c and scopes, from the cache
// unless it is expired or equal to stale (a token the registry refused).
// Concurrent requests for one key share one fetch.
func (r *Registries) token(ctx context.Context, c challenge, scopes []string, cred Credentials, stale string) (string, error) {
	realm := c.params["realm"]
	if realm == "" {
		return "", errors.New("bearer challenge without realm")
	}
	key := tokenKey{realm: realm, service: c.params["service"], scope: strings.Join(scopes, " "), cred: credID(cred)}
	r.mu.Lock()
	e, ok := r.tokens[key]
	if ok && stale != "" && e.token == stale {
		delete(r.tokens, key)
		ok = false
	}
	r.mu.Unlock()
	if ok && !r.expired(e.expires) {
		return e.token, nil
	}
	ch := r.tokenSF.DoChan(key.String(), func() (any, error) {
		fctx, cancel := context.WithTimeout(r.life, tokenFetchTimeout)
		defer cancel()
		e, err := r.fetchToken(fctx, key, scopes, cred)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		r.tokens[key] = e
		r.mu.Unlock()
		return e, nil
	})
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case res := <-ch:
		if res.Err != nil {
			return "", res.Err
		}
		return res.Val.(tokenEntry).token, nil
	}
}

// fetchToken asks the token server: OAuth2 POST with the identity token
// when there is one, otherwise GET with Basic credentials or anonymously.
func (r *Registries) fetchToken(ctx context.Context, key tokenKey, scopes []string, cred Credentials) (tokenEntry, error) {
	u, err := url.Parse(key.realm)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return tokenEntry{}, fmt.Errorf("bearer realm %q is not an http(s) URL", redactString(key.realm))
	}
	q := u.Query()
	if key.service != "" {
		q.Set("service", key.service)
	}
	for _, s := range scopes {
		q.Add("scope", s)
	}
	var req *http.Request
	op := "fetch token"
	if cred.IdentityToken != "" {
		op = "fetch oauth2 token"
		q.Set("grant_type", "refresh_token")
		q.Set("refresh_token", cred.IdentityToken)
		q.Set("client_id", "stargz-store")
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(q.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	} else {
		if cred.Username != "" {
			q.Set("account", cred.Username)
		}
		u.RawQuery = q.Encode()
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err == nil && (cred.Username != "" || cred.Password != "") {
			req.SetBasicAuth(cred.Username, cred.Password)
		}
	}
	if err != nil {
		return tokenEntry{}, fmt.Errorf("%s from %s: %w", op, redactURL(u), err)
	}
	resp, err := r.send(r.tokenTransport(u.Host), req)
	if err != nil {
		return tokenEntry{}, fmt.Errorf("%s: %w", op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return tokenEntry{}, &StatusError{Op: op, URL: redactURL(req.URL), Status: resp.StatusCode}
	}
	return r.decodeToken(resp.Body, op, req.URL)
}

func (r *Registries) decodeToken(body io.Reader, op string, u *url.URL) (tokenEntry, error) {
	var t struct {
		Token       string    `json:"token"`
		AccessToken string    `json:"access_token"`
		ExpiresIn   int64     `json:"expires_in"`
		IssuedAt    time.Time `json:"issued_at"`
	}
	if err := json.NewDecoder(io.LimitReader(body, maxTokenBody)).Decode(&t); err != nil {
		return tokenEntry{}, fmt.Errorf("%s from %s: %w", op, redactURL(u), redactJSONError(err))
	}
	e := tokenEntry{token: t.Token}
	if e.token == "" {
		e.token = t.AccessToken
	}
	if e.token == "" {
		return tokenEntry{}, fmt.Errorf("%s from %s: no token in the answer", op, redactURL(u))
	}
	life := minTokenLifetime
	if t.ExpiresIn > int64(life/time.Second) && t.ExpiresIn < 1<<31 {
		life = time.Duration(t.ExpiresIn) * time.Second
	}
	issued := t.IssuedAt
	if issued.IsZero() || issued.After(r.now()) {
		issued = r.now()
	}
	e.expires = issued.Add(life)
	return e, nil
}

// tokenTransport picks the transport for a token server: the registry's own
// (TLS settings, certs.d) when the realm is on a known registry host,
// otherwise the plain one.
func (r *Registries) tokenTransport(host string) http.RoundTripper {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, h := range r.hosts {
		if k.host == host {
			return h.base
		}
	}
	return r.plain
}
