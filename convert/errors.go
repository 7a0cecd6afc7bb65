// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"

	"github.com/docker/distribution/registry/api/errcode"
	"go.podman.io/image/v5/docker"
)

// Error classes returned (wrapped, together with the cause) by [Image]. Test with errors.Is.
var (
	// ErrNotFound means the source image, tag, repository or one of its blobs does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnauthorized means the registry refused the credentials, or none were given where
	// some are needed.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnreachable means the registry could not be contacted at all (DNS, connection refused,
	// TLS, timeout).
	ErrUnreachable = errors.New("registry unreachable")
	// ErrUnsupported means the image uses a manifest schema, layer media type or compression
	// that cannot be converted (schema 1, encrypted layers, xz, bzip2).
	ErrUnsupported = errors.New("unsupported")
	// ErrInterrupted means a connection to a registry broke in the middle of a transfer.
	ErrInterrupted = errors.New("transfer interrupted")
)

// classify wraps err with "<what>: <class>: <err>" when it recognises a class, or "<what>: <err>"
// otherwise. The cause stays reachable through errors.Is and errors.As.
func classify(what string, err error) error {
	if class := errorClass(err); class != nil {
		return fmt.Errorf("%s: %w: %w", what, class, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// errorClass maps an error from containers/image to one of the package's sentinels, or nil.
func errorClass(err error) error {
	if err == nil {
		return nil
	}
	if errors.As(err, new(docker.ErrUnauthorizedForCredentials)) {
		return ErrUnauthorized
	}
	var list errcode.Errors // does not implement Unwrap; c/image reports the first one
	if errors.As(err, &list) && len(list) > 0 {
		return errorClass(list[0])
	}
	var coder errcode.ErrorCoder
	if errors.As(err, &coder) {
		code := coder.ErrorCode()
		switch {
		case code == errcode.ErrorCodeUnauthorized, code == errcode.ErrorCodeDenied:
			return ErrUnauthorized
		case code.Descriptor().HTTPStatusCode == http.StatusNotFound:
			return ErrNotFound
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil // the caller gave up; the registry may be fine
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op != "dial" {
		return ErrInterrupted // reset or closed after the connection was made
	}
	var ue *url.Error
	if errors.As(err, &ue) && (errors.Is(ue.Err, io.EOF) || errors.Is(ue.Err, io.ErrUnexpectedEOF)) {
		return ErrInterrupted // the registry hung up before answering
	}
	if op != nil || errors.As(err, new(*net.DNSError)) ||
		errors.As(err, new(*tls.CertificateVerificationError)) || errors.As(err, new(tls.RecordHeaderError)) ||
		errors.As(err, new(x509.UnknownAuthorityError)) || errors.As(err, new(x509.HostnameError)) {
		return ErrUnreachable
	}
	return nil
}
