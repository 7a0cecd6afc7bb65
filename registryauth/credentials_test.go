// SPDX-License-Identifier: Apache-2.0

package registryauth

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stargz-store/stargz-store/refspec"
)

func TestFileResolverPodmanOrder(t *testing.T) {
	dir := isolate(t)
	home, run := filepath.Join(dir, "home"), filepath.Join(dir, "run")
	writeFile(t, filepath.Join(run, "containers/auth.json"), authJSON(t, map[string][2]string{
		"a.example": {"xdg-runtime", "p1"},
	}))
	writeFile(t, filepath.Join(home, ".config/containers/auth.json"), authJSON(t, map[string][2]string{
		"a.example":          {"config-home", "p2"},
		"b.example":          {"config-home", "p2"},
		"b.example/team/app": {"repo-specific", "p3"},
		"docker.io":          {"hub-user", "p4"},
	}))
	writeFile(t, filepath.Join(home, ".docker/config.json"), authJSON(t, map[string][2]string{
		"c.example": {"docker-config", "p5"},
		"a.example": {"docker-config", "p5"},
	}))
	tests := []struct{ ref, wantUser string }{
		{"a.example/x:1", "xdg-runtime"},
		{"b.example/x:1", "config-home"},
		{"b.example/team/app:1", "repo-specific"},
		{"c.example/x:1", "docker-config"},
		{"alpine", "hub-user"},
		{"d.example/x:1", ""},
	}
	check := func(r Resolver) {
		t.Helper()
		for _, tt := range tests {
			c, err := r.Resolve(t.Context(), mustRef(t, tt.ref))
			if err != nil || c.Username != tt.wantUser {
				t.Errorf("Resolve(%s) = %v, %v, want user %q", tt.ref, c, err, tt.wantUser)
			}
		}
	}
	check(FileResolver{})
	r, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	check(r.creds)

	// REGISTRY_AUTH_FILE replaces the search, as Podman's --authfile default.
	only := filepath.Join(dir, "only.json")
	writeFile(t, only, authJSON(t, map[string][2]string{"a.example": {"env-file", "p6"}}))
	t.Setenv("REGISTRY_AUTH_FILE", only)
	tests = []struct{ ref, wantUser string }{{"a.example/x:1", "env-file"}, {"c.example/x:1", ""}}
	check(FileResolver{})
	// Options.AuthFile wins over the environment.
	explicit := filepath.Join(dir, "explicit.json")
	writeFile(t, explicit, authJSON(t, map[string][2]string{"a.example": {"explicit", "p7"}}))
	r, err = New(Options{AuthFile: explicit})
	if err != nil {
		t.Fatal(err)
	}
	tests = []struct{ ref, wantUser string }{{"a.example/x:1", "explicit"}}
	check(r.creds)
}

func TestFileResolverBrokenFile(t *testing.T) {
	dir := isolate(t)
	f := filepath.Join(dir, "auth.json")
	writeFile(t, f, `{"auths": {"a.example": {"auth": "not base64 SECRETX"}}}`)
	_, err := FileResolver{}.Resolve(t.Context(), mustRef(t, "a.example/x:1"))
	_ = err // c/image decides whether this is an error; it must not panic
	writeFile(t, f, `{"auths": `)
	t.Setenv("REGISTRY_AUTH_FILE", f)
	if _, err := (FileResolver{}).Resolve(t.Context(), mustRef(t, "a.example/x:1")); err == nil {
		t.Error("Resolve with a truncated auth file: no error")
	}
}

func TestStaticAndMulti(t *testing.T) {
	t.Parallel()
	s := Static{
		"docker.io/library/alpine:3.20": {Username: "exact"},
		"quay.io/org/app":               {Username: "repo"},
		"quay.io/org":                   {Username: "ns"},
		"quay.io":                       {Username: "host"},
	}
	fallback := ResolverFunc(func(context.Context, refspec.Reference) (Credentials, error) {
		return Credentials{Username: "fallback"}, nil
	})
	failing := ResolverFunc(func(context.Context, refspec.Reference) (Credentials, error) {
		return Credentials{}, errors.New("boom")
	})
	tests := []struct {
		r        Resolver
		ref      string
		wantUser string
		wantErr  bool
	}{
		{s, "alpine:3.20", "exact", false},
		{s, "alpine:3.21", "", false},
		{s, "quay.io/org/app:1", "repo", false},
		{s, "quay.io/org/other:1", "ns", false},
		{s, "quay.io/x/y:1", "host", false},
		{Multi(nil, s, fallback), "alpine:3.21", "fallback", false},
		{Multi(s, fallback), "quay.io/x/y:1", "host", false},
		{Multi(Static{}, failing, fallback), "alpine", "", true},
		{Multi(), "alpine", "", false},
	}
	for i, tt := range tests {
		c, err := tt.r.Resolve(t.Context(), mustRef(t, tt.ref))
		if c.Username != tt.wantUser || (err != nil) != tt.wantErr {
			t.Errorf("case %d: Resolve(%s) = %v, %v, want %q (error %v)", i, tt.ref, c, err, tt.wantUser, tt.wantErr)
		}
	}
}

func TestMemoryHelperData(t *testing.T) {
	t.Parallel()
	var m Memory
	data := `{"docker.io/library/alpine:3.20": {"username": "u", "password": "pw-SECRET", "identityToken": ""},
	          "alpine:edge": {"username": "e", "password": "x"}}`
	if err := m.AddHelperData([]byte(data)); err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string]string{"alpine:3.20": "u", "docker.io/library/alpine:edge": "e", "alpine": ""} {
		c, err := m.Resolve(t.Context(), mustRef(t, ref))
		if err != nil || c.Username != want {
			t.Errorf("Resolve(%s) = %v, %v, want %q", ref, c, err, want)
		}
	}
	c, _ := m.Resolve(t.Context(), mustRef(t, "alpine:3.20"))
	if s := fmt.Sprint(c); strings.Contains(s, "pw-SECRET") {
		t.Errorf("Credentials print their secret: %s", s)
	}
	for _, bad := range []string{`{"alpine": {"password": "pw-SECRET"`, `{"UPPER/x": {"password": "pw-SECRET"}}`, `["pw-SECRET"]`} {
		err := m.AddHelperData([]byte(bad))
		if err == nil || strings.Contains(err.Error(), "pw-SECRET") {
			t.Errorf("AddHelperData(%q) = %v, want an error without the secret", bad, err)
		}
	}
	m.Set("docker.io/library/alpine:3.20", Credentials{})
	if c, _ := m.Resolve(t.Context(), mustRef(t, "alpine:3.20")); !c.IsZero() {
		t.Errorf("after Set(zero): %v, want anonymous", c)
	}
}
