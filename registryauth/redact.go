// SPDX-License-Identifier: Apache-2.0

package registryauth

import (
	"net/url"
	"strings"
)

// safeQuery lists the query parameters that never carry secrets and are
// worth keeping in logs and errors. Every other value is replaced: blob
// storage redirects carry signatures and credentials under many names
// (X-Amz-Signature, X-Goog-Credential, sig, token, …), so redaction is by
// allow list, not by deny list.
var safeQuery = map[string]bool{
	"ns": true, "service": true, "scope": true, "digest": true, "n": true, "last": true,
}

// redactURL returns u as a string without user info and with every query
// value outside safeQuery replaced by "REDACTED". Safe for logs and errors.
func redactURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	c := *u
	c.User = nil
	c.Fragment, c.RawFragment = "", ""
	if c.RawQuery != "" {
		q := c.Query()
		for k, vs := range q {
			if safeQuery[strings.ToLower(k)] {
				continue
			}
			for i := range vs {
				vs[i] = "REDACTED"
			}
		}
		c.RawQuery = q.Encode()
	}
	return c.String()
}

// redactString parses s as a URL and redacts it; an unparsable string is
// replaced as a whole, since it cannot be checked.
func redactString(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "REDACTED"
	}
	return redactURL(u)
}
