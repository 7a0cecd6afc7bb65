// SPDX-License-Identifier: Apache-2.0

package refspec

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

const hexA = "3f2c4e8a0d1b6c5e7f9a8b2d4c6e1f3a5b7c9d0e2f4a6b8c1d3e5f7a9b0c2d4e"

var goodRefs = []struct {
	name, in, want string
}{
	{"short", "alpine", "docker.io/library/alpine:latest"},
	{"short-tag", "alpine:3.20", "docker.io/library/alpine:3.20"},
	{"hub-user", "user/app:v1", "docker.io/user/app:v1"},
	{"qualified", "docker.io/library/alpine:latest", "docker.io/library/alpine:latest"},
	{"ghcr", "ghcr.io/stargz-containers/alpine:3.10.2-esgz", "ghcr.io/stargz-containers/alpine:3.10.2-esgz"},
	{"port", "localhost:5000/foo/bar:tag", "localhost:5000/foo/bar:tag"},
	{"ip-port", "127.0.0.1:41234/x:1", "127.0.0.1:41234/x:1"},
	{"digest", "quay.io/x/y@sha256:" + hexA, "quay.io/x/y@sha256:" + hexA},
	{"short-digest", "alpine@sha256:" + hexA, "docker.io/library/alpine@sha256:" + hexA},
	{"deep", "registry.example.com/a/b/c/d:e_f.g-h", "registry.example.com/a/b/c/d:e_f.g-h"},
}

var badRefs = []struct{ name, in string }{
	{"empty", ""},
	{"upper-repo", "docker.io/library/Alpine"},
	{"tag-and-digest", "alpine:3.20@sha256:" + hexA},
	{"bad-digest-len", "alpine@sha256:abc"},
	{"bad-digest-algo", "alpine@md5:" + hexA},
	{"upper-hex", "alpine@sha256:" + strings.ToUpper(hexA)},
	{"space", "alpine latest"},
	{"nul", "alpine\x00:latest"},
	{"trailing-colon", "alpine:"},
	{"scheme", "docker://alpine"},
	{"hex-id", hexA},
	{"bad-tag", "alpine:-x"},
	{"too-long", "example.com/" + strings.Repeat("a", 300)},
}

func TestParse(t *testing.T) {
	t.Parallel()
	for _, tt := range goodRefs {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q) error %v", tt.in, err)
			}
			if got := r.String(); got != tt.want {
				t.Errorf("Parse(%q).String() = %q, want %q", tt.in, got, tt.want)
			}
			if got := r.Named().String(); got != tt.want {
				t.Errorf("Parse(%q).Named().String() = %q, want %q", tt.in, got, tt.want)
			}
			r2, err := Parse(r.String())
			if err != nil || r2 != r {
				t.Errorf("Parse(%q) = %v, %v, want %v", r.String(), r2, err, r)
			}
		})
	}
	for _, tt := range badRefs {
		t.Run("bad-"+tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := Parse(tt.in)
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("Parse(%q) = %v, %v, want ErrInvalid", tt.in, r, err)
			}
		})
	}
}

func TestReferenceParts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in                              string
		domain, path, name, tag, digest string
	}{
		{"alpine", "docker.io", "library/alpine", "docker.io/library/alpine", "latest", ""},
		{"localhost:5000/foo/bar:t", "localhost:5000", "foo/bar", "localhost:5000/foo/bar", "t", ""},
		{"quay.io/x/y@sha256:" + hexA, "quay.io", "x/y", "quay.io/x/y", "", "sha256:" + hexA},
	}
	for _, tt := range tests {
		r, err := Parse(tt.in)
		if err != nil {
			t.Fatal(err)
		}
		got := [5]string{r.Domain(), r.Path(), r.Name(), r.Tag(), r.Digest().String()}
		want := [5]string{tt.domain, tt.path, tt.name, tt.tag, tt.digest}
		if got != want {
			t.Errorf("Parse(%q) parts = %q, want %q", tt.in, got, want)
		}
	}
}

func TestZeroReference(t *testing.T) {
	t.Parallel()
	var r Reference
	if !r.IsZero() || r.String() != "" || r.Named() != nil {
		t.Errorf("zero Reference: IsZero=%v String=%q Named=%v", r.IsZero(), r.String(), r.Named())
	}
}

func TestPathElem(t *testing.T) {
	t.Parallel()
	// The example from als-protocol.md §3.1.
	r, err := Parse("ghcr.io/stargz-containers/alpine:3.10.2-esgz")
	if err != nil {
		t.Fatal(err)
	}
	const want = "Z2hjci5pby9zdGFyZ3otY29udGFpbmVycy9hbHBpbmU6My4xMC4yLWVzZ3o="
	if got := r.PathElem(); got != want {
		t.Errorf("PathElem() = %q, want %q", got, want)
	}
	for _, tt := range goodRefs {
		r, _ := Parse(tt.in)
		got, err := FromPathElem(r.PathElem())
		if err != nil || got != r {
			t.Errorf("FromPathElem(%q) = %v, %v, want %v", r.PathElem(), got, err, r)
		}
	}
}

func TestFromPathElemInvalid(t *testing.T) {
	t.Parallel()
	canon := "docker.io/library/alpine:latest"
	enc := base64.StdEncoding.EncodeToString([]byte(canon))
	// "docker.io/library/busybox:1.36?" style strings would need '?' which the
	// grammar refuses; use a name whose encoding has padding for the unpadded case.
	padded := base64.StdEncoding.EncodeToString([]byte("docker.io/library/alpine:3"))
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"not-base64", "!!!!"},
		{"unpadded", strings.TrimRight(padded, "=")},
		{"raw-url", base64.RawURLEncoding.EncodeToString([]byte(canon))},
		{"newline", enc[:4] + "\n" + enc[4:]},
		{"non-canonical-name", base64.StdEncoding.EncodeToString([]byte("alpine"))},
		{"pad-bits", padded[:len(padded)-2] + "j="},
		{"nul", base64.StdEncoding.EncodeToString([]byte(canon + "\x00"))},
		{"bad-ref", base64.StdEncoding.EncodeToString([]byte("docker.io/library/UPPER:latest"))},
		{"tag-and-digest", base64.StdEncoding.EncodeToString([]byte(canon + "@sha256:" + hexA))},
		{"huge", strings.Repeat("A", maxPathElem+4)},
	}
	if padded == strings.TrimRight(padded, "=") {
		t.Fatal("test fixture must need padding")
	}
	for _, tt := range tests {
		if r, err := FromPathElem(tt.in); !errors.Is(err, ErrInvalid) {
			t.Errorf("FromPathElem(%q) [%s] = %v, %v, want ErrInvalid", tt.in, tt.name, r, err)
		}
	}
}

func TestParseDigest(t *testing.T) {
	t.Parallel()
	good := []string{"sha256:" + hexA, "sha512:" + hexA + hexA}
	for _, s := range good {
		if d, err := ParseDigest(s); err != nil || d.String() != s {
			t.Errorf("ParseDigest(%q) = %v, %v", s, d, err)
		}
	}
	bad := []string{"", "sha256", "sha256:", "sha256:" + hexA[:63], "sha256:" + strings.ToUpper(hexA),
		"md5:" + hexA, "sha256:" + hexA + "\x00", "../sha256:" + hexA, "sha256:" + hexA + "/x"}
	for _, s := range bad {
		if d, err := ParseDigest(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseDigest(%q) = %v, %v, want ErrInvalid", s, d, err)
		}
	}
}
