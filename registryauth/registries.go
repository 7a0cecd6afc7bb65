// SPDX-License-Identifier: Apache-2.0

package registryauth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/pkg/tlsclientconfig"
	"go.podman.io/image/v5/types"
	"go.podman.io/storage/pkg/configfile"
	"go.podman.io/storage/pkg/unshare"
	"golang.org/x/sync/singleflight"

	"github.com/stargz-store/stargz-store/refspec"
)

const (
	dockerDomain   = "docker.io"
	dockerRegistry = "registry-1.docker.io" // what docker.io means on the wire (c/image docker_client.go)
)

// Options configure New. The zero value reads everything from Podman's
// default locations.
type Options struct {
	// AuthFile is the auth.json to read. "" means Podman's search order:
	// REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
	// ~/.config/containers/auth.json, ~/.docker/config.json (see FileResolver).
	AuthFile string
	// RegistriesConf is the registries.conf to read. "" means the system
	// default, honouring CONTAINERS_REGISTRIES_CONF.
	RegistriesConf string
	// RegistriesConfDir is the registries.conf.d drop-in directory. "" means
	// the system default.
	RegistriesConfDir string
	// CertDir is a base directory of per-host certificate directories
	// (<CertDir>/<host[:port]>/{ca.crt,client.cert,client.key}), like
	// /etc/containers/certs.d. "" means the containers certs.d search order
	// (~/.config/containers/certs.d, /etc/containers/certs.d, …,
	// /etc/docker/certs.d; first existing <base>/<host[:port]> wins).
	CertDir string
	// Credentials is consulted before the auth files, e.g. a *Memory filled
	// by the additional-layer-store auth helper. nil means auth files only.
	Credentials Resolver
	// Logger receives Debug lines for every HTTP exchange (URLs redacted).
	// nil discards.
	Logger *slog.Logger
}

// Registries turns references into registry endpoints with ready-to-use
// authenticated transports. It holds the token cache and the per-host
// connection pools shared by all endpoints. Safe for concurrent use; create
// one per process with New (the zero value is not usable).
type Registries struct {
	sys     *types.SystemContext
	creds   Resolver
	log     *slog.Logger
	plain   *http.Transport // for hosts other than the registry (redirect targets)
	now     func() time.Time
	tokenSF singleflight.Group // keyed by tokenKey.String()
	// life is the lifetime of shared token fetches, which run detached
	// from the request that started them; Close cancels it.
	life   context.Context
	cancel context.CancelFunc

	// mu guards the fields below.
	mu     sync.Mutex
	hosts  map[hostKey]*hostState
	tokens map[tokenKey]tokenEntry
}

type hostKey struct {
	host     string
	insecure bool
}

// New validates the registries configuration and returns a Registries.
func New(opts Options) (*Registries, error) {
	sys := &types.SystemContext{
		AuthFilePath:                opts.AuthFile,
		SystemRegistriesConfPath:    opts.RegistriesConf,
		SystemRegistriesConfDirPath: opts.RegistriesConfDir,
		DockerPerHostCertDirPath:    opts.CertDir,
	}
	sys = withAuthFileFromEnv(sys)
	// Load now (bypassing c/image's process-wide cache) so that a broken
	// registries.conf is reported at start-up, not on the first pull.
	if _, err := sysregistriesv2.TryUpdatingCache(sys); err != nil {
		return nil, fmt.Errorf("load registries configuration %s: %w", sysregistriesv2.ConfigurationSourceDescription(sys), err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	life, cancel := context.WithCancel(context.Background())
	return &Registries{
		life:   life,
		cancel: cancel,
		sys:    sys,
		creds:  Multi(opts.Credentials, FileResolver{Sys: sys}),
		log:    log,
		plain:  tlsclientconfig.NewTransport(),
		now:    time.Now,
		hosts:  map[hostKey]*hostState{},
		tokens: map[tokenKey]tokenEntry{},
	}, nil
}

// SystemContext returns the containers/image configuration matching
// Options (auth file, registries.conf, certificate directories), for calls
// into containers/image such as docker.NewReference(…).NewImageSource. The
// caller must not modify it.
func (r *Registries) SystemContext() *types.SystemContext { return r.sys }

// Close cancels token fetches in flight and releases idle connections.
// Afterwards, requests that need a new token fail; Close is idempotent.
func (r *Registries) Close() error {
	r.cancel()
	r.plain.CloseIdleConnections()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, h := range r.hosts {
		h.base.CloseIdleConnections()
	}
	return nil
}

// Endpoint is one place an image can be pulled from, as returned by
// Endpoints. Its Transport is safe for concurrent use; use it with an
// http.Client (it follows redirects itself, so the client never sees one).
// A hand-built Endpoint without Transport is only good for its URLs.
type Endpoint struct {
	Ref       reference.Named   // the reference at this endpoint (mirror-rewritten)
	Host      string            // host[:port] to dial (docker.io is registry-1.docker.io)
	Insecure  bool              // plain HTTP allowed and TLS verification off
	Transport http.RoundTripper // TLS + auth (Basic/Bearer, token cache per scope, refresh on 401) + redirects + redaction

	ns    string // namespace-proxy "ns" query parameter, if any
	state *hostState
}

// BlobURL returns scheme://host/v2/<path>/blobs/<d>. The scheme is https
// unless the endpoint is insecure and https has been seen to fail (the
// Transport downgrades such requests on its own either way).
func (e Endpoint) BlobURL(d digest.Digest) string {
	return e.url("blobs", d.String())
}

// ManifestURL returns scheme://host/v2/<path>/manifests/<tag or digest>,
// where tagOrDigest "" means the endpoint reference's own digest or tag.
func (e Endpoint) ManifestURL(tagOrDigest string) string {
	if tagOrDigest == "" {
		if c, ok := e.Ref.(reference.Canonical); ok {
			tagOrDigest = c.Digest().String()
		} else if t, ok := e.Ref.(reference.Tagged); ok {
			tagOrDigest = t.Tag()
		}
	}
	return e.url("manifests", tagOrDigest)
}

func (e Endpoint) url(kind, id string) string {
	scheme := "https"
	if e.state != nil && e.state.httpOnly() {
		scheme = "http"
	}
	u := url.URL{Scheme: scheme, Host: e.Host, Path: "/v2/" + reference.Path(e.Ref) + "/" + kind + "/" + id}
	if e.ns != "" {
		u.RawQuery = url.Values{"ns": {e.ns}}.Encode()
	}
	return u.String()
}

// Endpoints returns where ref can be pulled from, according to
// registries.conf: mirrors first, the primary location last. A blocked
// registry is an error wrapping ErrBlocked; a blocked mirror is skipped.
func (r *Registries) Endpoints(ctx context.Context, ref refspec.Reference) ([]Endpoint, error) {
	named := ref.Named()
	if named == nil {
		return nil, fmt.Errorf("endpoints: %w", refspec.ErrInvalid)
	}
	reg, err := sysregistriesv2.FindRegistry(r.sys, named.Name())
	if err != nil {
		return nil, fmt.Errorf("find registry of %s: %w", ref, err)
	}
	sources := []sysregistriesv2.PullSource{{Endpoint: sysregistriesv2.Endpoint{Location: ref.Domain()}, Reference: named}}
	if reg != nil {
		if reg.Blocked {
			return nil, fmt.Errorf("pull %s: %w by registries.conf (prefix %q)", ref, ErrBlocked, reg.Prefix)
		}
		if sources, err = reg.PullSourcesFromReference(named); err != nil {
			return nil, fmt.Errorf("pull sources of %s: %w", ref, err)
		}
	}
	var eps []Endpoint
	for i, ps := range sources {
		ep, err := r.endpoint(ctx, ps)
		if errors.Is(err, ErrBlocked) && i < len(sources)-1 {
			r.log.DebugContext(ctx, "skip blocked mirror", "ref", ps.Reference.String())
			continue
		}
		if err != nil {
			return nil, err
		}
		eps = append(eps, ep)
	}
	return eps, nil
}

func (r *Registries) endpoint(_ context.Context, ps sysregistriesv2.PullSource) (Endpoint, error) {
	domain := reference.Domain(ps.Reference)
	if reg, err := sysregistriesv2.FindRegistry(r.sys, ps.Reference.Name()); err != nil {
		return Endpoint{}, fmt.Errorf("find registry of %s: %w", ps.Reference, err)
	} else if reg != nil && reg.Blocked {
		return Endpoint{}, fmt.Errorf("pull %s: %w by registries.conf (prefix %q)", ps.Reference, ErrBlocked, reg.Prefix)
	}
	ref, err := refspec.Parse(ps.Reference.String())
	if err != nil {
		return Endpoint{}, fmt.Errorf("endpoint reference %s: %w", ps.Reference, err)
	}
	host := domain
	if host == dockerDomain {
		host = dockerRegistry
	}
	h, err := r.host(domain, host, ps.Endpoint.Insecure)
	if err != nil {
		return Endpoint{}, err
	}
	t := &authTransport{r: r, h: h, ref: ref, ns: ps.Endpoint.NamespaceProxy,
		scope: "repository:" + reference.Path(ps.Reference) + ":pull"}
	return Endpoint{
		Ref:       ps.Reference,
		Host:      host,
		Insecure:  ps.Endpoint.Insecure,
		Transport: t,
		ns:        ps.Endpoint.NamespaceProxy,
		state:     h,
	}, nil
}

// host returns the shared state of one registry host, creating its TLS
// transport on first use. certDomain is the user-visible domain used for the
// certs.d lookup (docker.io, not registry-1.docker.io, as c/image does).
func (r *Registries) host(certDomain, host string, insecure bool) (*hostState, error) {
	key := hostKey{host, insecure}
	r.mu.Lock()
	h, ok := r.hosts[key]
	r.mu.Unlock()
	if ok {
		return h, nil
	}
	tlsc := &tls.Config{InsecureSkipVerify: insecure} //nolint:gosec // registries.conf insecure = true asks for exactly this
	dir, err := certDir(r.sys, certDomain)
	if err != nil {
		return nil, fmt.Errorf("find certificates of %s: %w", certDomain, err)
	}
	if dir != "" {
		if err := tlsclientconfig.SetupCertificates(dir, tlsc); err != nil {
			return nil, fmt.Errorf("load certificates of %s from %s: %w", certDomain, dir, err)
		}
	}
	tr := tlsclientconfig.NewTransport()
	tr.TLSClientConfig = tlsc
	h = &hostState{host: host, insecure: insecure, base: tr}
	r.mu.Lock()
	defer r.mu.Unlock()
	if old, ok := r.hosts[key]; ok {
		return old, nil
	}
	r.hosts[key] = h
	return h, nil
}

// certDir replicates containers/image's private dockerCertDir
// (docker/docker_client.go, v5.42.0): sys.DockerCertPath, then
// sys.DockerPerHostCertDirPath/<host>, then the first existing
// <base>/<host> over the containers certs.d search path
// (~/.config/containers/certs.d, /etc/containers/certs.{rootful,rootless}.d,
// /etc/containers/certs.d, /usr/share/containers/…) and /etc/docker/certs.d.
// "" means no directory.
func certDir(sys *types.SystemContext, hostPort string) (string, error) {
	if sys.DockerCertPath != "" {
		return sys.DockerCertPath, nil
	}
	if sys.DockerPerHostCertDirPath != "" {
		return filepath.Join(sys.DockerPerHostCertDirPath, hostPort), nil
	}
	paths, err := configfile.GetSearchPaths(&configfile.File{
		Name:                           "certs",
		Extension:                      "d",
		DoNotUseExtensionForConfigName: true,
		UserId:                         unshare.GetRootlessUID(),
		RootForImplicitAbsolutePaths:   sys.RootForImplicitAbsolutePaths,
	})
	if err != nil {
		return "", err
	}
	bases := append(paths.DropInDirectories, filepath.Join(sys.RootForImplicitAbsolutePaths, "/etc/docker/certs.d"))
	for _, base := range bases {
		dir := filepath.Join(base, hostPort)
		_, err := os.Stat(dir)
		switch {
		case err == nil:
			return dir, nil
		case errors.Is(err, os.ErrNotExist), errors.Is(err, os.ErrPermission):
			continue
		default:
			return "", err
		}
	}
	return "", nil
}
