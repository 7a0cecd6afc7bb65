// SPDX-License-Identifier: Apache-2.0

package registryauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"go.podman.io/image/v5/pkg/docker/config"
	"go.podman.io/image/v5/types"

	"github.com/stargz-store/stargz-store/refspec"
)

// Credentials are what a registry or its token server accepts. The zero
// value means anonymous access.
type Credentials struct {
	Username string
	Password string
	// IdentityToken is an OAuth2 refresh token; when set, bearer tokens are
	// obtained with a POST grant_type=refresh_token instead of Basic auth.
	IdentityToken string
}

// IsZero reports whether c means anonymous access.
func (c Credentials) IsZero() bool { return c == Credentials{} }

// String never shows secrets, so Credentials are safe in %v.
func (c Credentials) String() string {
	if c.IsZero() {
		return "anonymous"
	}
	return fmt.Sprintf("user %q (secret REDACTED)", c.Username)
}

// Resolver finds the credentials for one reference, as served by one
// endpoint (for a mirror, the mirror-rewritten reference). No credentials is
// the zero Credentials and a nil error.
type Resolver interface {
	Resolve(ctx context.Context, ref refspec.Reference) (Credentials, error)
}

// ResolverFunc adapts a function to Resolver.
type ResolverFunc func(ctx context.Context, ref refspec.Reference) (Credentials, error)

// Resolve calls f.
func (f ResolverFunc) Resolve(ctx context.Context, ref refspec.Reference) (Credentials, error) {
	return f(ctx, ref)
}

// Multi returns a Resolver that asks each non-nil resolver in turn and
// returns the first non-zero Credentials. An error stops the search.
func Multi(rs ...Resolver) Resolver {
	var list []Resolver
	for _, r := range rs {
		if r != nil {
			list = append(list, r)
		}
	}
	return multi(list)
}

type multi []Resolver

func (m multi) Resolve(ctx context.Context, ref refspec.Reference) (Credentials, error) {
	for _, r := range m {
		c, err := r.Resolve(ctx, ref)
		if err != nil || !c.IsZero() {
			return c, err
		}
	}
	return Credentials{}, nil
}

// FileResolver resolves credentials the way Podman does, through
// containers/image pkg/docker/config: sys.AuthFilePath when set, otherwise
// REGISTRY_AUTH_FILE when set (only that file, as Podman's --authfile
// default), otherwise $XDG_RUNTIME_DIR/containers/auth.json,
// ~/.config/containers/auth.json, $DOCKER_CONFIG/config.json or
// ~/.docker/config.json, ~/.dockercfg, plus credential helpers (credHelpers,
// credsStore and registries.conf credential-helpers). Files are read on every
// call, so a `podman login` takes effect at once. A nil sys uses the
// defaults. Safe for concurrent use.
type FileResolver struct {
	Sys *types.SystemContext
}

// Resolve looks up ref's credentials, most specific key first
// (host/namespace/repo, …, host).
func (f FileResolver) Resolve(_ context.Context, ref refspec.Reference) (Credentials, error) {
	named := ref.Named()
	if named == nil {
		return Credentials{}, fmt.Errorf("resolve credentials: %w", refspec.ErrInvalid)
	}
	a, err := config.GetCredentialsForRef(withAuthFileFromEnv(f.Sys), named)
	if err != nil {
		return Credentials{}, fmt.Errorf("read credentials for %s: %w", ref.Name(), err)
	}
	return Credentials{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken}, nil
}

// Static maps keys to credentials. A key is, from most to least specific:
// a full reference ("docker.io/library/alpine:3.20", the form Podman's
// additional-layer-store auth helper sends), a repository or namespace
// ("quay.io/org/app", "quay.io/org"), or a registry domain ("quay.io").
// Resolve tries them in that order. Keys are matched verbatim: use
// refspec's String/Name forms. A Static must not be modified while in use;
// use Memory for credentials that arrive at runtime.
type Static map[string]Credentials

// Resolve returns the credentials of the most specific matching key.
func (s Static) Resolve(_ context.Context, ref refspec.Reference) (Credentials, error) {
	if c, ok := s[ref.String()]; ok {
		return c, nil
	}
	for name := ref.Name(); name != ""; {
		if c, ok := s[name]; ok {
			return c, nil
		}
		i := strings.LastIndexByte(name, '/')
		if i < 0 {
			break
		}
		name = name[:i]
	}
	return Credentials{}, nil
}

// Memory is a concurrency-safe Static that can be filled at runtime, for
// example with what Podman's additional-layer-store-auth-helper hands over.
// The zero value is empty and ready to use.
type Memory struct {
	// mu guards the field below.
	mu sync.RWMutex
	m  Static
}

// Set stores c under key (see Static for the key forms). A zero c removes
// the key.
func (m *Memory) Set(key string, c Credentials) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.IsZero() {
		delete(m.m, key)
		return
	}
	if m.m == nil {
		m.m = Static{}
	}
	m.m[key] = c
}

// helperEntry is one value of the JSON the auth helper receives on stdin
// (c/image docker/docker_image_src.go): {"<ref>": {"username", "password",
// "identityToken"}}.
type helperEntry struct {
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identityToken"`
}

// AddHelperData parses the JSON object containers/image writes to an
// additional-layer-store-auth-helper and stores each entry under its
// normalised reference. Either every entry is stored or, on error, none.
// Errors never contain secrets.
func (m *Memory) AddHelperData(data []byte) error {
	var in map[string]helperEntry
	if err := json.Unmarshal(data, &in); err != nil {
		return fmt.Errorf("parse auth helper data: %w", redactJSONError(err))
	}
	add := make(Static, len(in))
	for k, e := range in {
		ref, err := refspec.Parse(k)
		if err != nil {
			return fmt.Errorf("parse auth helper data: %w", err)
		}
		add[ref.String()] = Credentials(e)
	}
	for k, c := range add {
		m.Set(k, c)
	}
	return nil
}

// redactJSONError drops the detail of a JSON syntax or type error, which
// may quote input bytes (and so a password).
func redactJSONError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("invalid JSON at offset %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("wrong JSON type at offset %d", te.Offset)
	}
	return errors.New("invalid JSON")
}

// Resolve looks ref up as Static does.
func (m *Memory) Resolve(ctx context.Context, ref refspec.Reference) (Credentials, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.m.Resolve(ctx, ref)
}

// withAuthFileFromEnv applies REGISTRY_AUTH_FILE the way Podman's CLI does
// (c/common pkg/auth): containers/image itself does not read it. It is the
// only place this package reads the variable.
func withAuthFileFromEnv(sys *types.SystemContext) *types.SystemContext {
	if sys != nil && (sys.AuthFilePath != "" || sys.DockerCompatAuthFilePath != "" || sys.LegacyFormatAuthFilePath != "") {
		return sys
	}
	f := os.Getenv("REGISTRY_AUTH_FILE")
	if f == "" {
		return sys
	}
	c := types.SystemContext{}
	if sys != nil {
		c = *sys
	}
	c.AuthFilePath = f
	return &c
}
