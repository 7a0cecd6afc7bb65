// SPDX-License-Identifier: Apache-2.0

package registryauth

import (
	"net/http"
	"strings"
)

// challenge is one authentication challenge of a WWW-Authenticate header
// (RFC 9110 §11.6.1), e.g. Bearer realm="https://auth/token",service="reg".
type challenge struct {
	scheme string            // lowercased: "basic", "bearer", …
	params map[string]string // keys lowercased; values unquoted
}

// parseChallenges parses every WWW-Authenticate header of h. A header may
// hold several challenges separated by commas; parameters belong to the
// challenge before them. Malformed parts are skipped, never fatal: the
// input comes from the network.
func parseChallenges(h http.Header) []challenge {
	var out []challenge
	for _, v := range h.Values("WWW-Authenticate") {
		out = append(out, parseChallengeHeader(v)...)
	}
	return out
}

func parseChallengeHeader(s string) []challenge {
	var out []challenge
	for i := 0; i < len(s); {
		i = skipSep(s, i)
		tok, next := readToken(s, i)
		if tok == "" {
			if next == i {
				next++ // not a token character: skip it
			}
			i = next
			continue
		}
		j := skipSpace(s, next)
		if j < len(s) && s[j] == '=' && !isToken68Tail(s, j) {
			val, after := readValue(s, skipSpace(s, j+1))
			if len(out) > 0 {
				out[len(out)-1].params[strings.ToLower(tok)] = val
			}
			i = after
			continue
		}
		out = append(out, challenge{scheme: strings.ToLower(tok), params: map[string]string{}})
		i = next
	}
	return out
}

// isToken68Tail reports whether the '=' at s[j] is padding of a token68
// credential (e.g. "Negotiate YII=") rather than a parameter assignment.
func isToken68Tail(s string, j int) bool {
	k := j
	for k < len(s) && s[k] == '=' {
		k++
	}
	n := k - j
	k = skipSpace(s, k)
	return n > 1 || k == len(s) || s[k] == ','
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

func skipSep(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == ',') {
		i++
	}
	return i
}

func readToken(s string, i int) (string, int) {
	j := i
	for j < len(s) && isTokenChar(s[j]) {
		j++
	}
	return s[i:j], j
}

// readValue reads a token or a quoted-string starting at s[i].
func readValue(s string, i int) (string, int) {
	if i >= len(s) || s[i] != '"' {
		j := i
		for j < len(s) && s[j] != ',' && s[j] != ' ' && s[j] != '\t' {
			j++
		}
		return s[i:j], j
	}
	var b strings.Builder
	j := i + 1
	for j < len(s) {
		switch c := s[j]; {
		case c == '"':
			return b.String(), j + 1
		case c == '\\' && j+1 < len(s):
			b.WriteByte(s[j+1])
			j += 2
		default:
			b.WriteByte(c)
			j++
		}
	}
	return b.String(), j // unterminated: take what is there
}

func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~/", c) >= 0
}
