// SPDX-License-Identifier: Apache-2.0

package registryauth

import (
	"errors"
	"fmt"
)

var (
	// ErrUnauthorized is wrapped by the error a Transport returns when a
	// registry still answers 401 or 403 after the credentials (or an
	// anonymous token) were tried, and by token-server refusals. layerfs/errno.go
	// maps it.
	ErrUnauthorized = errors.New("unauthorized")

	// ErrBlocked is wrapped by Endpoints when registries.conf blocks the
	// reference's registry.
	ErrBlocked = errors.New("registry blocked")
)

// StatusError is an unexpected HTTP status from a registry or token server.
// It wraps ErrUnauthorized for 401 and 403. URL is redacted.
type StatusError struct {
	Op     string // what was attempted, e.g. "GET", "fetch token"
	URL    string // redacted
	Status int
	Code   string // registry error code from the body, if any (e.g. DENIED)
}

// Error describes the status; it carries no secrets.
func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s %s: status %d", e.Op, e.URL, e.Status)
	if e.Code != "" {
		msg += " (" + e.Code + ")"
	}
	return msg
}

// Unwrap returns ErrUnauthorized for 401 and 403, nil otherwise.
func (e *StatusError) Unwrap() error {
	if e.Status == 401 || e.Status == 403 {
		return ErrUnauthorized
	}
	return nil
}
