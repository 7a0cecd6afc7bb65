// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.podman.io/image/v5/types"

	"github.com/stargz-store/stargz-store/cachedir"
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
	// FetchTimeout bounds how long one attempt of a registry request (a
	// range, a manifest, a config) may go without progress: until the
	// answer's headers, then between two 64 KiB of its body (see
	// store/remote). A stalled attempt is abandoned and retried. 0 means
	// 10 s.
	FetchTimeout time.Duration
	// ReadTimeout bounds how long a file read (Layer.ReadAt, ReadBlobAt)
	// waits for the registry in all: retries included, then the reader
	// gets an error wrapping context.DeadlineExceeded, and the fetch it
	// started ends too. No retry of any fetch starts after it. 0 means
	// 30 s.
	ReadTimeout time.Duration
	// Retries caps how many times a fetch retries a transient failure (a
	// 5xx, 429 or 408 answer, a reset, refused or stalled connection, a
	// truncated body), with backoff from 100 ms doubling up to 2 s. 0
	// means no cap but ReadTimeout; negative means none.
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

	// Cache is the on-disk cache of verified chunks and TOCs, shared by
	// all layers; the caller opens and closes it (after the Manager). nil
	// keeps each layer's chunks in memory while it is open and turns
	// background fetch off.
	Cache *cachedir.Dir
	// NoPrefetch turns off fetching a layer's prioritized files (the blob
	// up to .prefetch.landmark) when it is first looked up.
	NoPrefetch bool
	// PrefetchTimeout bounds how long the first lookup of a layer waits
	// for its prefetch; the prefetch goes on in the background after it.
	// 0 means 10 s.
	PrefetchTimeout time.Duration
	// NoBackgroundFetch turns off fetching the rest of a layer into the
	// cache after its prefetch.
	NoBackgroundFetch bool
	// BackgroundShare is the fraction of the time background fetch of a
	// layer may keep a request running, in (0, 1]; it pauses for the
	// rest. 0 means 0.5.
	BackgroundShare float64
	// BackgroundDelay is how long a layer must go without a file read
	// fetching from the registry before its background fetch starts or
	// sends its next request, so that it does not compete with a
	// container's start-up. 0 means 2 s; negative means no delay.
	BackgroundDelay time.Duration
	// MaxParallelRequests bounds the range requests in flight to one
	// registry host; a quarter of them (at least one) may be background
	// requests. 0 means 8.
	MaxParallelRequests int
	// SingleRange turns off multi-range requests (they are also turned
	// off per blob when a registry refuses one).
	SingleRange bool
	// ReadAhead is how many compressed bytes of a file beyond the chunk
	// being read are fetched in the same request. 0 means 1 MiB; negative
	// means none.
	ReadAhead int64
	// NoSpeculate turns off the speculative fetches of layers without
	// prioritized files: their start-up files and the libraries an ELF
	// file that was read will load (see speculate.go).
	NoSpeculate bool
	// StartupFiles are the paths fetched in one request when a layer
	// without prioritized files is first looked up. nil means
	// DefaultStartupFiles; an empty, non-nil slice means none.
	StartupFiles []string
	// MaxFetchMemory bounds the bytes the fetches of all layers hold in
	// memory at once: compressed buffers and decoded chunks not yet in
	// the cache. File reads may use all of it, prefetch, speculative and
	// background fetches half. 0 means 256 MiB. See fetchmem.go.
	MaxFetchMemory int64
	// MaxIndexMemory bounds the memory the indexes (TOCs) of the open
	// layers keep together, estimated from their entries; a layer that
	// does not fit, once idle layers are freed, is not lazy. 0 means
	// 512 MiB. See indexmem.go.
	MaxIndexMemory int64
	// NoWholeFiles turns off whole-file cache entries (see
	// LayerOptions.NoWholeFiles): without FUSE passthrough they only cost
	// disk space.
	NoWholeFiles bool

	// clock replaces the real clock in tests; nil means real time.
	clock clock
	// backoff is the first retry delay, maxBackoff the longest; 0 means
	// 100 ms and 2 s. Set by tests.
	backoff, maxBackoff time.Duration
}

const (
	defaultResolveTimeout  = 30 * time.Second
	defaultFetchTimeout    = 10 * time.Second
	defaultReadTimeout     = 30 * time.Second
	defaultIdleTimeout     = 2 * time.Minute
	defaultNotLazyTTL      = time.Minute
	defaultBackoff         = 100 * time.Millisecond
	defaultPrefetchTimeout = 10 * time.Second
	defaultBackgroundShare = 0.5
	defaultBackgroundDelay = 2 * time.Second
	defaultMaxParallel     = 8
	defaultReadAhead       = 1 << 20
	defaultMaxBackoff      = 2 * time.Second
)

// DefaultStartupFiles are read at nearly every container start before
// the program's own files: the runtime resolves the user and groups in
// the image's databases, and libc reads the local time zone.
var DefaultStartupFiles = []string{"etc/passwd", "etc/group", "etc/localtime"}

// withDefaults checks o and fills in the defaults.
func (o Options) withDefaults() (Options, error) {
	if o.Registries == nil {
		return o, errors.New("store options: Registries is required")
	}
	if o.ResolveTimeout < 0 || o.FetchTimeout < 0 || o.ReadTimeout < 0 || o.IdleTimeout < 0 || o.NotLazyTTL < 0 || o.MaxTOCSize < 0 ||
		o.PrefetchTimeout < 0 || o.MaxParallelRequests < 0 || o.MaxFetchMemory < 0 || o.MaxIndexMemory < 0 {
		return o, errors.New("store options: negative timeout or size")
	}
	if o.BackgroundShare < 0 || o.BackgroundShare > 1 {
		return o, fmt.Errorf("store options: BackgroundShare %v is not in (0, 1]", o.BackgroundShare)
	}
	if o.BackgroundShare == 0 {
		o.BackgroundShare = defaultBackgroundShare
	}
	if o.MaxParallelRequests == 0 {
		o.MaxParallelRequests = defaultMaxParallel
	}
	if o.MaxFetchMemory == 0 {
		o.MaxFetchMemory = defaultFetchMemory
	}
	if o.MaxIndexMemory == 0 {
		o.MaxIndexMemory = defaultIndexMemory
	}
	switch {
	case o.BackgroundDelay == 0:
		o.BackgroundDelay = defaultBackgroundDelay
	case o.BackgroundDelay < 0:
		o.BackgroundDelay = 0
	}
	switch {
	case o.ReadAhead == 0:
		o.ReadAhead = defaultReadAhead
	case o.ReadAhead < 0:
		o.ReadAhead = 0
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.ResolveTimeout, defaultResolveTimeout)
	def(&o.FetchTimeout, defaultFetchTimeout)
	def(&o.ReadTimeout, defaultReadTimeout)
	def(&o.IdleTimeout, defaultIdleTimeout)
	def(&o.NotLazyTTL, defaultNotLazyTTL)
	def(&o.backoff, defaultBackoff)
	def(&o.maxBackoff, defaultMaxBackoff)
	def(&o.PrefetchTimeout, defaultPrefetchTimeout)
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
