// SPDX-License-Identifier: Apache-2.0

package registryauth

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

func TestEndpointsMirrorsInsecureBlocked(t *testing.T) {
	dir := isolate(t)
	conf := filepath.Join(dir, "registries.conf")
	writeFile(t, conf, `
[[registry]]
prefix = "example.com/lib"
location = "example.com/lib"

[[registry.mirror]]
location = "mirror.local:5000/cache"
insecure = true

[[registry.mirror]]
location = "blocked-mirror.local/x"

[[registry]]
location = "blocked-mirror.local"
blocked = true

[[registry]]
location = "evil.example.org"
blocked = true

[[registry]]
location = "plain.local:5000"
insecure = true
`)
	confDir := filepath.Join(dir, "registries.conf.d")
	writeFile(t, filepath.Join(confDir, "10-proxy.conf"), `
[[registry]]
location = "proxied.example.com"
[[registry.mirror]]
location = "proxy.local"
namespace-proxy = "proxied.example.com"
`)
	r, err := New(Options{RegistriesConf: conf, RegistriesConfDir: confDir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	eps, err := r.Endpoints(ctx, mustRef(t, "example.com/lib/app:1"))
	if err != nil {
		t.Fatal(err)
	}
	type ep struct {
		ref, host string
		insecure  bool
	}
	var got []ep
	for _, e := range eps {
		got = append(got, ep{e.Ref.String(), e.Host, e.Insecure})
	}
	want := []ep{
		{"mirror.local:5000/cache/app:1", "mirror.local:5000", true},
		{"example.com/lib/app:1", "example.com", false},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("Endpoints = %+v, want %+v (mirror first, blocked mirror skipped, primary last)", got, want)
	}
	if u := eps[0].BlobURL(digest.Digest("sha256:" + strings.Repeat("a", 64))); u != "https://mirror.local:5000/v2/cache/app/blobs/sha256:"+strings.Repeat("a", 64) {
		t.Errorf("mirror BlobURL = %q", u)
	}
	if u := eps[1].ManifestURL(""); u != "https://example.com/v2/lib/app/manifests/1" {
		t.Errorf("ManifestURL = %q", u)
	}

	if _, err := r.Endpoints(ctx, mustRef(t, "evil.example.org/a/b:c")); !errors.Is(err, ErrBlocked) {
		t.Errorf("Endpoints(blocked) = %v, want ErrBlocked", err)
	}
	e := endpoint(t, r, "plain.local:5000/a:b")
	if !e.Insecure {
		t.Errorf("plain.local:5000 endpoint not insecure")
	}
	e = endpoint(t, r, "alpine")
	if e.Host != "registry-1.docker.io" || e.Ref.String() != "docker.io/library/alpine:latest" {
		t.Errorf("docker.io endpoint = %s at %s, want docker.io/library/alpine:latest at registry-1.docker.io", e.Ref, e.Host)
	}
	if u := e.BlobURL(digest.Digest("sha256:" + strings.Repeat("b", 64))); !strings.HasPrefix(u, "https://registry-1.docker.io/v2/library/alpine/blobs/") {
		t.Errorf("docker.io BlobURL = %q", u)
	}
	eps, err = r.Endpoints(ctx, mustRef(t, "proxied.example.com/p:1"))
	if err != nil || len(eps) != 2 || eps[0].Host != "proxy.local" {
		t.Fatalf("Endpoints from the drop-in = %v, %v, want proxy.local first", eps, err)
	}
	if u := eps[0].ManifestURL("x"); u != "https://proxy.local/v2/p/manifests/x?ns=proxied.example.com" {
		t.Errorf("namespace-proxy ManifestURL = %q, want an ns parameter", u)
	}
}

func TestNewRejectsBrokenRegistriesConf(t *testing.T) {
	dir := isolate(t)
	conf := filepath.Join(dir, "broken.conf")
	writeFile(t, conf, "[[registry]\nlocation = ")
	if _, err := New(Options{RegistriesConf: conf}); err == nil {
		t.Error("New with a broken registries.conf: no error")
	}
}

func TestCertDirSearch(t *testing.T) {
	dir := isolate(t)
	home := filepath.Join(dir, "home")
	r, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	// ~/.config/containers/certs.d/<host> is the first base searched.
	want := filepath.Join(home, ".config/containers/certs.d/reg.local:5000")
	writeFile(t, filepath.Join(want, "ca.crt"), "")
	got, err := certDir(r.sys, "reg.local:5000")
	if err != nil || got != want {
		t.Errorf("certDir = %q, %v, want %q", got, err, want)
	}
	if got, _ := certDir(r.sys, "nowhere.invalid"); got != "" {
		t.Errorf("certDir(missing) = %q, want \"\"", got)
	}
	r2, _ := New(Options{CertDir: "/x/certs"})
	if got, _ := certDir(r2.sys, "h:1"); got != "/x/certs/h:1" {
		t.Errorf("certDir with Options.CertDir = %q, want /x/certs/h:1", got)
	}
}
