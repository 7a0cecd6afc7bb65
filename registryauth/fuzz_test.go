// SPDX-License-Identifier: Apache-2.0

package registryauth

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stargz-store/stargz-store/refspec"
)

// FuzzChallenge: the WWW-Authenticate parser never panics or loops, and
// every challenge it returns has a lowercase scheme.
func FuzzChallenge(f *testing.F) {
	for _, tt := range challengeTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h := http.Header{}
		h.Add("WWW-Authenticate", s)
		for _, c := range parseChallenges(h) {
			if c.scheme == "" || c.scheme != strings.ToLower(c.scheme) || c.params == nil {
				t.Fatalf("parseChallenges(%q): bad challenge %+v", s, c)
			}
		}
	})
}

// FuzzAuthFile: credentials handed over by Podman's auth helper (an
// auth-file-like JSON map of reference to credentials) are parsed without
// panicking, syntax errors never echo input bytes, and what is accepted
// resolves.
func FuzzAuthFile(f *testing.F) {
	f.Add([]byte(`{"docker.io/library/alpine:3.20": {"username": "u", "password": "p", "identityToken": ""}}`))
	f.Add([]byte(`{"alpine": {"password": "SECRET"`))
	f.Add([]byte(`{"quay.io/a/b@sha256:` + strings.Repeat("0", 64) + `": {"identityToken": "t"}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Memory
		if err := m.AddHelperData(data); err != nil {
			// Keys (references) may be quoted in errors; bytes of invalid
			// JSON, where a secret could sit anywhere, never are.
			if !json.Valid(data) && strings.Contains(err.Error(), "SECRET") {
				t.Fatalf("error echoes input secret: %v", err)
			}
			return
		}
		for k := range m.m {
			ref, err := refspec.Parse(k)
			if err != nil || ref.String() != k {
				t.Fatalf("stored key %q is not a canonical reference", k)
			}
			c, err := m.Resolve(context.Background(), ref)
			if err != nil || c != m.m[k] {
				t.Fatalf("Resolve(%s) = %v, %v", k, c, err)
			}
		}
	})
}
