// SPDX-License-Identifier: Apache-2.0

package registryauth

import (
	"bufio"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

// seen records the Authorization headers a server received, by scheme.
type seen struct {
	mu   sync.Mutex
	auth map[string][]string // "http" or "https" -> Authorization values
}

func (s *seen) add(r *http.Request) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.auth == nil {
		s.auth = map[string][]string{}
	}
	s.auth[scheme] = append(s.auth[scheme], r.Header.Get("Authorization"))
}

func (s *seen) get(scheme string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.auth[scheme]...)
}

// dualServer serves h over TLS and plain http on the same host:port (it
// tells them apart by the first byte), as a registry that redirects from
// https to http on its own host does. Its certificate is trusted through
// certDir.
func dualServer(t *testing.T, certDir string, h http.Handler) string {
	t.Helper()
	tlsSrv := httptest.NewUnstartedServer(h)
	tlsSrv.StartTLS() // for its certificate
	t.Cleanup(tlsSrv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan net.Conn)
	srv := &http.Server{Handler: h}
	go srv.Serve(chanListener{c: conns, ln: ln, done: make(chan struct{}), once: &sync.Once{}})
	t.Cleanup(func() { srv.Close() })
	cfg := tlsSrv.TLS
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				br := bufio.NewReader(c)
				b, err := br.Peek(1)
				if err != nil {
					c.Close()
					return
				}
				var conn net.Conn = peekedConn{c, br}
				if b[0] == 0x16 { // a TLS handshake record
					conn = tls.Server(conn, cfg)
				}
				select {
				case conns <- conn:
				case <-t.Context().Done():
					conn.Close()
				}
			}()
		}
	}()
	host := ln.Addr().String()
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw})
	writeFile(t, filepath.Join(certDir, host, "ca.crt"), string(b))
	return host
}

type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// chanListener hands the server the connections dualServer sorted.
type chanListener struct {
	c    chan net.Conn
	ln   net.Listener
	done chan struct{}
	once *sync.Once
}

func (l chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.ln.Close()
}

func (l chanListener) Addr() net.Addr { return l.ln.Addr() }

// TestNoCredentialsAfterDowngradeRedirect: a registry reached over https
// that redirects a blob to plain http on its own host gets no credentials
// over http, whether it asks for Basic or Bearer ones.
func TestNoCredentialsAfterDowngradeRedirect(t *testing.T) {
	for _, insecure := range []bool{false, true} {
		t.Run(fmt.Sprintf("insecure=%v", insecure), func(t *testing.T) {
			dir := isolate(t)
			certDir := filepath.Join(dir, "certs.d")
			var s seen
			var host string
			host = dualServer(t, certDir, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s.add(r)
				if u, p, ok := r.BasicAuth(); !ok || u != "bob" || p != "s3cret" {
					w.Header().Set("WWW-Authenticate", `Basic realm="r"`)
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				if r.TLS != nil {
					http.Redirect(w, r, "http://"+host+r.URL.Path+"?plain", http.StatusTemporaryRedirect)
					return
				}
				io.WriteString(w, "blob")
			}))
			if insecure {
				conf := filepath.Join(dir, "registries.conf")
				writeFile(t, conf, fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", host))
				t.Setenv("CONTAINERS_REGISTRIES_CONF", conf)
			}
			r, err := New(Options{CertDir: certDir, Credentials: Static{host: {Username: "bob", Password: "s3cret"}}})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			ep := endpoint(t, r, host+"/x/y:1")
			_, err = get(t.Context(), t, ep, ep.BlobURL(digest.FromString("b")), nil)
			if !errors.Is(err, ErrUnauthorized) {
				t.Errorf("GET redirected to plain http = %v, want the plain hop's 401 (no credentials sent)", err)
			}
			if got := s.get("https"); len(got) == 0 || got[len(got)-1] == "" {
				t.Errorf("https requests carried %q, want credentials on the registry's https", got)
			}
			for _, a := range s.get("http") {
				if a != "" {
					t.Errorf("a plain http request after the redirect carried Authorization %q", a)
				}
			}
		})
	}
}

// TestCredentialsOverPlainHTTP: credentials go over plain http to a
// registry registries.conf marks insecure, and when the caller itself
// asks for http; never to a secure registry's https request downgraded by
// anything else.
func TestCredentialsOverPlainHTTP(t *testing.T) {
	for _, tt := range []struct {
		name     string
		insecure bool
		want     bool
	}{
		{"insecure registry", true, true},
		{"caller chose http", false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := isolate(t)
			var s seen
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s.add(r)
				if _, _, ok := r.BasicAuth(); !ok {
					w.Header().Set("WWW-Authenticate", `Basic realm="r"`)
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				io.WriteString(w, "ok")
			}))
			defer srv.Close()
			host := hostOf(srv)
			if tt.insecure {
				conf := filepath.Join(dir, "registries.conf")
				writeFile(t, conf, fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", host))
				t.Setenv("CONTAINERS_REGISTRIES_CONF", conf)
			}
			r, err := New(Options{Credentials: Static{host: {Username: "bob", Password: "pw"}}})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			ep := endpoint(t, r, host+"/x/y:1")
			u := strings.Replace(ep.ManifestURL(""), "https://", "http://", 1)
			resp, err := get(t.Context(), t, ep, u, nil)
			if err != nil {
				t.Fatalf("GET %s = %v", u, err)
			}
			resp.Body.Close()
			if got := s.get("http"); (len(got) > 0 && got[len(got)-1] != "") != tt.want {
				t.Errorf("plain http requests carried %q, want credentials: %v", got, tt.want)
			}
		})
	}
}

// TestBearerRealmOverHTTP: a registry reached over https may not send the
// token request, and the credentials in it, to a plain-http realm, on
// loopback or not; an insecure registry may.
func TestBearerRealmOverHTTP(t *testing.T) {
	for _, insecure := range []bool{false, true} {
		t.Run(fmt.Sprintf("insecure=%v", insecure), func(t *testing.T) {
			dir := isolate(t)
			certDir := filepath.Join(dir, "certs.d")
			auth := newTokenAuth("alice", "pw")
			var mu sync.Mutex
			n := 0
			realm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				n++
				mu.Unlock()
				auth.ServeToken(w, r)
			}))
			defer realm.Close()
			reg := httptest.NewTLSServer(auth.Require(realm.URL+"/token", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "ok")
			})))
			defer reg.Close()
			trustServer(t, certDir, reg)
			host := hostOf(reg)
			if insecure {
				conf := filepath.Join(dir, "registries.conf")
				writeFile(t, conf, fmt.Sprintf("[[registry]]\nlocation = %q\ninsecure = true\n", host))
				t.Setenv("CONTAINERS_REGISTRIES_CONF", conf)
			}
			r, err := New(Options{CertDir: certDir, Credentials: Static{host: {Username: "alice", Password: "pw"}}})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			ep := endpoint(t, r, host+"/x/y:1")
			resp, err := get(t.Context(), t, ep, ep.BlobURL(digest.FromString("b")), nil)
			mu.Lock()
			defer mu.Unlock()
			if insecure {
				if err != nil {
					t.Fatalf("GET with an http realm for an insecure registry = %v", err)
				}
				resp.Body.Close()
				if n != 1 {
					t.Errorf("%d token requests, want 1", n)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "plain http") {
				t.Errorf("GET with an http realm = %v, want it refused", err)
			}
			if n != 0 {
				t.Errorf("%d token requests reached the plain-http realm, want none", n)
			}
		})
	}
}
