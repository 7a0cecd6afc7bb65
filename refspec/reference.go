// SPDX-License-Identifier: Apache-2.0

package refspec

import (
	_ "crypto/sha256" // register the digest algorithms go-digest validates against
	_ "crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
)

// ErrInvalid is wrapped by every error this package returns for a malformed
// reference, path element or digest. layerfs maps it to ENOENT.
var ErrInvalid = errors.New("invalid reference")

// maxPathElem bounds the input FromPathElem is willing to decode. A FUSE name
// is at most 255 bytes; the bound only keeps a caller that is not the kernel
// from making us decode megabytes.
const maxPathElem = 4096

// Reference is a fully qualified, normalised image reference with either a
// tag or a digest. It is a comparable value type, safe for concurrent use.
//
// The zero Reference is not a valid reference: its String is "", Named is
// nil and IsZero reports true. Every Reference obtained from Parse or
// FromPathElem is valid.
type Reference struct {
	name   string        // fully qualified repository name, e.g. docker.io/library/alpine
	tag    string        // "" when digest is set
	digest digest.Digest // "" when tag is set
}

// Parse parses and normalises s the way Podman does: a short name gets the
// docker.io domain (and "library/" for a single path component), and a name
// without tag or digest gets ":latest". A reference with both a tag and a
// digest is refused, as the docker transport refuses it. Errors wrap
// ErrInvalid.
func Parse(s string) (Reference, error) {
	named, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return Reference{}, fmt.Errorf("parse reference %q: %w: %w", s, ErrInvalid, err)
	}
	named = reference.TagNameOnly(named)
	r := Reference{name: named.Name()}
	if t, ok := named.(reference.NamedTagged); ok {
		r.tag = t.Tag()
	}
	if d, ok := named.(reference.Canonical); ok {
		r.digest = d.Digest()
	}
	if r.tag != "" && r.digest != "" {
		return Reference{}, fmt.Errorf("parse reference %q: %w: both a tag and a digest", s, ErrInvalid)
	}
	return r, nil
}

// FromPathElem decodes the ALS path element elem (standard base64 with
// padding of the reference's String form) and parses it. Only the canonical
// element of a canonical reference is accepted: FromPathElem(e) succeeds
// only if FromPathElem(e).PathElem() == e. Errors wrap ErrInvalid.
func FromPathElem(elem string) (Reference, error) {
	if elem == "" || len(elem) > maxPathElem {
		return Reference{}, fmt.Errorf("decode path element of %d bytes: %w", len(elem), ErrInvalid)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(elem)
	if err != nil {
		return Reference{}, fmt.Errorf("decode path element %q: %w: %w", elem, ErrInvalid, err)
	}
	// The decoder skips '\r' and '\n'; re-encoding catches those and any
	// other malleability.
	if base64.StdEncoding.EncodeToString(b) != elem {
		return Reference{}, fmt.Errorf("decode path element %q: %w: not canonical base64", elem, ErrInvalid)
	}
	s := string(b)
	if strings.IndexByte(s, 0) >= 0 {
		return Reference{}, fmt.Errorf("decode path element %q: %w: NUL byte", elem, ErrInvalid)
	}
	r, err := Parse(s)
	if err != nil {
		return Reference{}, err
	}
	if r.String() != s {
		return Reference{}, fmt.Errorf("decode path element %q: %w: %q is not in canonical form %q", elem, ErrInvalid, s, r.String())
	}
	return r, nil
}

// String returns the fully qualified form, e.g.
// "docker.io/library/alpine:latest" or "quay.io/x/y@sha256:…". It is the
// string containers/storage encodes into the path element.
func (r Reference) String() string {
	switch {
	case r.digest != "":
		return r.name + "@" + r.digest.String()
	case r.tag != "":
		return r.name + ":" + r.tag
	}
	return r.name
}

// PathElem returns the ALS path element: base64.StdEncoding (with padding)
// of String. For a valid reference it never contains '/' or NUL.
func (r Reference) PathElem() string {
	return base64.StdEncoding.EncodeToString([]byte(r.String()))
}

// Named returns r as a containers/image reference (a NamedTagged or a
// Canonical), or nil for the zero Reference.
func (r Reference) Named() reference.Named {
	if r.IsZero() {
		return nil
	}
	n, err := reference.ParseNamed(r.String())
	if err != nil {
		// r came from Parse, so its String is in canonical form.
		panic(fmt.Sprintf("refspec: reparse %q: %v", r.String(), err))
	}
	return n
}

// IsZero reports whether r is the zero Reference.
func (r Reference) IsZero() bool { return r.name == "" }

// Name returns the fully qualified repository name without tag or digest,
// e.g. "docker.io/library/alpine".
func (r Reference) Name() string { return r.name }

// Domain returns the registry part of the name, e.g. "docker.io" or
// "localhost:5000". It is the logical domain, not the host to dial.
func (r Reference) Domain() string {
	d, _, _ := strings.Cut(r.name, "/")
	return d
}

// Path returns the repository path within the registry, e.g.
// "library/alpine".
func (r Reference) Path() string {
	_, p, _ := strings.Cut(r.name, "/")
	return p
}

// Tag returns the tag, or "" when r is pinned by digest.
func (r Reference) Tag() string { return r.tag }

// Digest returns the manifest digest, or "" when r names a tag.
func (r Reference) Digest() digest.Digest { return r.digest }

// ParseDigest parses s as "algorithm:hex" and validates it (known
// algorithm, lowercase hex of the right length). Errors wrap ErrInvalid.
func ParseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", fmt.Errorf("parse digest %q: %w: %w", s, ErrInvalid, err)
	}
	return d, nil
}
