// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"go.podman.io/image/v5/types"

	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
)

// Registries is what the Manager needs of the registry configuration:
// containers/image settings for resolving references, and the endpoints
// (mirrors first, primary last) with authenticated transports for range
// reads. *registryauth.Registries satisfies it.
type Registries interface {
	SystemContext() *types.SystemContext
	Endpoints(ctx context.Context, ref refspec.Reference) ([]registryauth.Endpoint, error)
}

var _ Registries = (*registryauth.Registries)(nil)

// Options configure New. Registries is required; every other zero value
// means the default given with the field.
type Options struct {
	// Registries resolves references and gives the endpoints to read blobs
	// from. Required.
	Registries Registries
	// ResolveTimeout bounds resolving one image (manifest, index, config)
	// and opening one layer (footer and TOC). 0 means 30 s.
	ResolveTimeout time.Duration
	// RequestTimeout bounds one HTTP range request, body included. 0 means
	// 60 s.
	RequestTimeout time.Duration
	// Retries is how many times a range request is retried after a 5xx
	// answer, a connection reset or a truncated body, with exponential
	// backoff. 0 means 3; negative means none.
	Retries int
	// IdleTimeout is how long a layer that was resolved but never used
	// (see Manager.Use) stays open, and how long a resolved image stays
	// cached once none of its layers is open. 0 means 2 min.
	IdleTimeout time.Duration
	// NotLazyTTL is how long the verdict that a layer cannot be served
	// lazily is remembered. 0 means 1 min.
	NotLazyTTL time.Duration
	// MaxTOCSize bounds a layer's decompressed TOC; 0 means the format's
	// default.
	MaxTOCSize int64
	// Logger receives the store's log lines; nil discards.
	Logger *slog.Logger

	// clock replaces the real clock in tests; nil means real time.
	clock clock
	// backoff is the first retry delay; 0 means 100 ms. Set by tests.
	backoff time.Duration
}

const (
	defaultResolveTimeout = 30 * time.Second
	defaultRequestTimeout = 60 * time.Second
	defaultRetries        = 3
	defaultIdleTimeout    = 2 * time.Minute
	defaultNotLazyTTL     = time.Minute
	defaultBackoff        = 100 * time.Millisecond
	maxBackoff            = 5 * time.Second
)

// withDefaults checks o and fills in the defaults.
func (o Options) withDefaults() (Options, error) {
	if o.Registries == nil {
		return o, errors.New("store options: Registries is required")
	}
	if o.ResolveTimeout < 0 || o.RequestTimeout < 0 || o.IdleTimeout < 0 || o.NotLazyTTL < 0 || o.MaxTOCSize < 0 {
		return o, errors.New("store options: negative timeout or size")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.ResolveTimeout, defaultResolveTimeout)
	def(&o.RequestTimeout, defaultRequestTimeout)
	def(&o.IdleTimeout, defaultIdleTimeout)
	def(&o.NotLazyTTL, defaultNotLazyTTL)
	def(&o.backoff, defaultBackoff)
	switch {
	case o.Retries == 0:
		o.Retries = defaultRetries
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.clock == nil {
		o.clock = realClock{}
	}
	return o, nil
}

// clock is the part of package time the Manager's timers use, so that
// tests can move time by hand.
type clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) stopper
}

type stopper interface{ Stop() bool }

type realClock struct{}

func (realClock) Now() time.Time                              { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) stopper { return time.AfterFunc(d, f) }
