// SPDX-License-Identifier: Apache-2.0

// Package registryauth finds registries, credentials and TLS settings the
// way Podman does, and provides authenticated HTTP transports for ranged
// blob reads.
//
// Nothing else in stargz-store reads auth.json, registries.conf or certs.d.
// The configuration is read through containers/image's public packages, so
// the store sees what `podman pull` sees:
//
//   - credentials: pkg/docker/config (REGISTRY_AUTH_FILE,
//     $XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json,
//     ~/.docker/config.json, credential helpers), see [FileResolver]; plus
//     credentials handed over at runtime by Podman's
//     additional-layer-store-auth-helper, see [Memory], composed with
//     [Multi];
//   - mirrors, insecure and blocked registries: pkg/sysregistriesv2;
//   - certificates: pkg/tlsclientconfig over the certs.d search order
//     (replicated, since containers/image keeps it private).
//
// containers/image keeps its bearer-token client private, so the token
// flow is implemented here: an [Endpoint]'s Transport answers
// "WWW-Authenticate: Basic" with the credentials and "Bearer
// realm=…,service=…,scope=…" with a token from the realm (Basic
// credentials, anonymous, or an OAuth2 refresh-token POST when an identity
// token is set). Tokens are cached per (realm, service, scope,
// credentials) until they expire; a 401 drops the token that was refused
// and retries once. Redirects (to blob storage) are followed inside the
// transport and never carry the registry's Authorization header to another
// host; where a blob redirects to is remembered for a few minutes, so the
// many range reads of a lazily pulled layer skip the registry round trip
// (a refused signed URL is re-resolved through the registry). Insecure registries are tried over https first and, when that
// fails, over plain http; the host then stays on http (c/image does the
// same when it pings a registry).
//
// Credentials (Authorization, and the Cookie header of the caller) never
// follow a redirect to another host, nor any hop after a redirect from
// https to http, even on the registry's own host. They go over plain
// http only to a registry registries.conf marks insecure, or when the
// caller itself asked for an http URL. A bearer realm over plain http is
// refused on the same terms, since the token request carries the
// credentials. Loopback hosts get no exception: a remote registry must
// not be able to send the user's credentials to a local port that any
// local user may listen on.
//
// Secrets never appear in errors or logs: URLs are redacted (user info and
// every query value except a small allow list), Authorization headers are
// never logged, and Credentials print as "user … (secret REDACTED)".
//
// A registry that still answers 401 or 403 after the credentials were
// tried yields an error wrapping [ErrUnauthorized] (layerfs/errno.go
// maps it). A blocked registry yields [ErrBlocked].
package registryauth
