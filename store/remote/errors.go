// SPDX-License-Identifier: Apache-2.0

package remote

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/stargz-store/stargz-store/registryauth"
)

// Error classes of the registry client; callers test them with
// errors.Is. A registry refusing our credentials wraps
// registryauth.ErrUnauthorized.
var (
	// ErrNotFound: the registry has no such manifest or blob (404).
	ErrNotFound = errors.New("not found")
	// ErrVerify: a manifest or blob does not match its digest.
	ErrVerify = errors.New("content does not match its digest")
)

// statusError is the one table from a registry's error answer to an
// error, for every request the package sends:
//
//	401, 403        wraps registryauth.ErrUnauthorized  not retried
//	404             wraps ErrNotFound                   not retried
//	408, 429, 5xx   transient                           retried
//	anything else   (416: "range not satisfiable")      not retried
//
// "Not retried" drops the endpoint from the loop; the other endpoints
// are still tried. The first 512 bytes of the body go into the message:
// registries explain themselves there.
func statusError(resp *http.Response) error {
	err := fmt.Errorf("status %s", resp.Status)
	if body, _ := io.ReadAll(io.LimitReader(resp.Body, 512)); len(strings.TrimSpace(string(body))) > 0 {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(body)))
	}
	switch code := resp.StatusCode; {
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		err = fmt.Errorf("%w: %w", registryauth.ErrUnauthorized, err)
	case code == http.StatusNotFound:
		err = fmt.Errorf("%w: %w", ErrNotFound, err)
	case code == http.StatusRequestedRangeNotSatisfiable:
		err = fmt.Errorf("%w: range not satisfiable", err)
	}
	return &attemptError{err: err, retry: retryable(resp.StatusCode)}
}

// retryable reports whether an answer with this status may be followed by
// a good one when the request is repeated.
func retryable(code int) bool {
	return code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout
}

// bodyErr turns a short body's io.EOF into io.ErrUnexpectedEOF.
func bodyErr(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// explain says in words what an authorization failure is.
func explain(err error) error {
	if errors.Is(err, registryauth.ErrUnauthorized) {
		return fmt.Errorf("authentication failed (check the credentials for this registry): %w", err)
	}
	return err
}
