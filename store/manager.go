// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/internal/flight"
	"github.com/stargz-store/stargz-store/internal/logthrottle"
	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
	"github.com/stargz-store/stargz-store/store/remote"
)

// errClosed is returned by a Manager after Close.
var errClosed = errors.New("store closed")

// blobKey names one layer blob of one image reference.
type blobKey struct {
	ref  refspec.Reference
	blob digest.Digest
}

// imageState is a resolved image kept in the cache. It is pinned while any
// of its layers is open and dropped IdleTimeout after that.
type imageState struct {
	img      *image
	more     []layerEntry // layers of the other index instances, once searched
	searched bool
	open     int       // ready layer states of this ref
	lastUsed time.Time // last lookup, or when open dropped to 0
}

// Manager turns (reference, digest) into lazily readable layers: it
// resolves images through containers/image, opens layers with range reads
// through the registry endpoints, and keeps them while storage uses them.
// It is safe for concurrent use. Create it with New and stop it with
// Close.
//
// Resolutions and layer opens run on contexts the Manager owns (see
// internal/flight), detached from the caller that started them, so one
// interrupted lookup does not abort the work others wait for; Close
// cancels them. Manager.mu is never held across network I/O, logging or a
// call into a Layer.
type Manager struct {
	opts     Options
	log      *slog.Logger
	warned   *logthrottle.Throttle[layerKey] // the level of lookup failures
	clk      clock
	resolves *flight.Group[refspec.Reference, *image]
	searches *flight.Group[refspec.Reference, []layerEntry]
	opens    *flight.Group[blobKey, *Layer]
	assembly chan struct{}  // whole-file assemblies running, over all layers
	mem      *fetchBudget   // memory the layers' fetches may hold (fetchmem.go)
	pins     *pinBudget     // cache bytes the layers' prefetches may pin
	wg       sync.WaitGroup // timer callbacks and early tail fetches running
	close    sync.Once
	// life ends at Close; early tail fetches run on it (as Layer.ctx,
	// the documented exception to "no ctx in a struct").
	life    context.Context
	endLife context.CancelFunc

	// mu guards the fields below.
	mu      sync.Mutex
	closed  bool
	hosts   map[string]*remote.Host // by registry host
	images  map[refspec.Reference]*imageState
	layers  map[layerKey]*layerState // both names of one layer share a state
	pending int                      // states in statePending (see maxPending)
	sweep   stopper                  // the armed sweep timer, or nil
	sweepAt time.Time                // when it fires
	sweepN  uint64                   // generation of the armed timer; a stopped one may still run
	// indexes holds the estimated index memory of each admitted open
	// layer, indexUsed their sum (indexmem.go).
	indexes   map[*Layer]int64
	indexUsed int64
}

// New returns a Manager. It does no I/O.
func New(opts Options) (*Manager, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	life, endLife := context.WithCancel(ctx)
	return &Manager{
		life:     life,
		endLife:  endLife,
		opts:     o,
		log:      o.Logger,
		clk:      o.clock,
		resolves: flight.New[refspec.Reference, *image](ctx),
		searches: flight.New[refspec.Reference, []layerEntry](ctx),
		opens:    flight.New[blobKey, *Layer](ctx),
		assembly: make(chan struct{}, maxAssemblies),
		mem:      newFetchBudget(o.MaxFetchMemory),
		pins:     newPinBudget(o.Cache),
		indexes:  map[*Layer]int64{},
		images:   map[refspec.Reference]*imageState{},
		layers:   map[layerKey]*layerState{},
		warned:   logthrottle.New[layerKey](warnQuiet, maxWarned),
		hosts:    map[string]*remote.Host{},
	}, nil
}

// Layer returns the layer of ref named d, its blob digest (Podman <= 5.0)
// or its TOC digest (Podman >= 5.1). The first call for an image resolves
// it; the first call for a layer reads its footer and TOC. Errors wrap
// ErrNotFound (the image has no such layer), ErrNotLazy (it has, but it
// cannot be served lazily) or ErrVerify; anything else is a fetch problem.
// Layer waits with ctx; the shared work goes on for other callers when
// ctx ends.
func (m *Manager) Layer(ctx context.Context, ref refspec.Reference, d digest.Digest) (*Layer, error) {
	l, err := m.layer(ctx, ref, d)
	if err != nil {
		m.logFailure(ctx, layerKey{ref, d}, err)
	}
	return l, err
}

func (m *Manager) layer(ctx context.Context, ref refspec.Reference, d digest.Digest) (*Layer, error) {
	if l, err, ok := m.cached(layerKey{ref, d}); ok {
		return l, err
	}
	img, err := m.image(ctx, ref)
	if err != nil {
		return nil, err
	}
	e, err := m.find(ctx, img, d)
	if err != nil {
		return nil, err
	}
	return m.open(ctx, e, img.tails[e.desc.Digest])
}

// Warnings about one layer name closer together than warnQuiet are logged
// at Debug: the lookups storage makes for one pull come in a burst, and
// one line per layer and pull says enough. maxWarned bounds the memory of
// them.
const (
	warnQuiet = time.Second
	maxWarned = 4096
)

// logFailure says why storage will pull the layer itself: at Warn once
// per burst of lookups, at Debug otherwise, with the reason's class
// (failureReason) and the error that says the rest. A layer the image
// does not have, a caller that gave up and a closed store are not worth
// a warning.
func (m *Manager) logFailure(ctx context.Context, k layerKey, err error) {
	switch {
	case ctx.Err() != nil, errors.Is(err, errClosed):
		return
	case errors.Is(err, ErrNotFound):
		m.log.DebugContext(ctx, "layer not found", "ref", k.ref.String(), "digest", k.d.String(), "err", err)
		return
	}
	m.log.Log(ctx, m.warned.Level(k, m.clk.Now()), "layer not served lazily", "ref", k.ref.String(), "digest", k.d.String(),
		"reason", failureReason(err), "err", err)
}

// failureReason classes a failed lookup for the log: "not-lazy" (the
// layer is not in a lazy format or is refused; the error says why),
// "unauthorized" (the registry refused our credentials), "verify" (the
// TOC does not match its digest), "timeout" (the lookup ran out of
// ResolveTimeout) or "registry" (any other failure to get the manifest,
// config or TOC).
func failureReason(err error) string {
	switch {
	case errors.Is(err, ErrNotLazy):
		return "not-lazy"
	case errors.Is(err, registryauth.ErrUnauthorized):
		return "unauthorized"
	case errors.Is(err, ErrVerify):
		return "verify"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "registry"
}

// cached answers from the layer states: an open layer, or a verdict that
// it is not lazy.
func (m *Manager) cached(k layerKey) (*Layer, error, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errClosed, true
	}
	st := m.layers[k]
	if st == nil {
		return nil, nil, false
	}
	now := m.clk.Now()
	switch st.kind {
	case stateReady:
		st.lastUsed = now
		return st.layer, nil, true
	case stateNotLazy:
		if now.Before(st.until) {
			return nil, st.err, true
		}
	}
	return nil, nil, false
}

// image returns the resolved image of ref, resolving it once for all
// concurrent callers. Only successes are cached.
func (m *Manager) image(ctx context.Context, ref refspec.Reference) (*image, error) {
	m.mu.Lock()
	if is := m.images[ref]; is != nil {
		is.lastUsed = m.clk.Now()
		m.mu.Unlock()
		return is.img, nil
	}
	m.mu.Unlock()
	return m.resolves.Do(ctx, ref, func(ctx context.Context) (*image, error) {
		m.mu.Lock()
		is := m.images[ref] // resolved just before this call began
		m.mu.Unlock()
		if is != nil {
			return is.img, nil
		}
		ctx, cancel := context.WithTimeout(ctx, m.opts.ResolveTimeout)
		defer cancel()
		start := time.Now()
		img, err := m.fetchImage(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("resolve %s: %w", ref, err)
		}
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return nil, errClosed
		}
		now := m.clk.Now()
		m.images[ref] = &imageState{img: img, lastUsed: now}
		m.scheduleLocked(now.Add(m.opts.IdleTimeout))
		m.mu.Unlock()
		m.log.Info("image resolved", "ref", ref.String(), "manifest", img.manifest.String(),
			"layers", len(img.layers), "instances", len(img.others), "dur", time.Since(start))
		return img, nil
	})
}

// find looks d up among the image's layers and, failing that, among the
// layers of the index's other instances (another platform, or another
// compression Podman chose).
func (m *Manager) find(ctx context.Context, img *image, d digest.Digest) (layerEntry, error) {
	if e, ok := findLayer(img.layers, d); ok {
		return e, nil
	}
	notFound := fmt.Errorf("layer %s of %s: %w", d, img.ref, ErrNotFound)
	if len(img.others) == 0 {
		return layerEntry{}, notFound
	}
	more, err := m.otherInstances(ctx, img)
	if err != nil {
		return layerEntry{}, err
	}
	if e, ok := findLayer(more, d); ok {
		return e, nil
	}
	return layerEntry{}, notFound
}

// otherInstances returns the layers of img's other index instances,
// fetching them once.
func (m *Manager) otherInstances(ctx context.Context, img *image) ([]layerEntry, error) {
	m.mu.Lock()
	if is := m.images[img.ref]; is != nil && is.img == img && is.searched {
		more := is.more
		m.mu.Unlock()
		return more, nil
	}
	m.mu.Unlock()
	return m.searches.Do(ctx, img.ref, func(ctx context.Context) ([]layerEntry, error) {
		ctx, cancel := context.WithTimeout(ctx, m.opts.ResolveTimeout)
		defer cancel()
		src, err := m.newSource(ctx, img.ref)
		if err != nil {
			return nil, fmt.Errorf("search the index of %s: %w", img.ref, err)
		}
		more, err := fetchInstances(ctx, src, img.ref, img.others)
		if err != nil {
			return nil, fmt.Errorf("search the index of %s: %w", img.ref, err)
		}
		m.mu.Lock()
		if is := m.images[img.ref]; is != nil && is.img == img {
			is.more, is.searched = more, true
		}
		m.mu.Unlock()
		return more, nil
	})
}

// open returns the open layer for e, opening it once for all concurrent
// callers and both of its names.
// tail, if not nil, is the blob's tail fetched ahead.
func (m *Manager) open(ctx context.Context, e layerEntry, tail *tailFetch) (*Layer, error) {
	ref := e.desc.Ref
	return m.opens.Do(ctx, blobKey{ref, e.desc.Digest}, func(ctx context.Context) (*Layer, error) {
		if l, err, ok := m.cached(layerKey{ref, e.desc.Digest}); ok {
			return l, err
		}
		if e.notLazy != nil {
			return nil, m.notLazy(e, fmt.Errorf("layer %s of %s: %w: %w", e.desc.Digest, ref, ErrNotLazy, e.notLazy))
		}
		ctx, cancel := context.WithTimeout(ctx, m.opts.ResolveTimeout)
		defer cancel()
		eps, err := m.opts.Registries.Endpoints(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("endpoints of %s: %w", ref, err)
		}
		start := time.Now()
		blob := remote.NewBlob(ref, e.desc.Digest, e.desc.Size, eps, m.host(ref.Domain()), m.opts.remoteOptions())
		if tail != nil {
			blob = tail.blob
		}
		var l *Layer
		l, err = OpenLayer(ctx, registryBlob{blob}, e.desc, LayerOptions{MaxTOCSize: m.opts.MaxTOCSize, Logger: m.log,
			Cache: m.opts.Cache, ReadAhead: m.opts.ReadAhead, Speculate: !m.opts.NoSpeculate, ReadTimeout: m.opts.ReadTimeout,
			NoWholeFiles: m.opts.NoWholeFiles, assembly: m.assembly, tail: tail,
			mem: m.mem, pins: m.pins, onClose: func() { m.unadmit(l) },
			ExternalTOC: func(d LayerDesc) ([]byte, error) { return fetchExternalTOC(ctx, m.newSource, d) }})
		if err == nil {
			if err = m.admit(l); err != nil {
				l.Close()
			}
		}
		if errors.Is(err, ErrNotLazy) {
			return nil, m.notLazy(e, fmt.Errorf("%s: %w", ref, err))
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ref, err)
		}
		if err := m.ready(e, l, blob); err != nil {
			l.Close()
			return nil, err
		}
		m.log.Info("layer resolved", "ref", ref.String(), "digest", e.desc.Digest.String(),
			"toc", e.desc.TOCDigest.String(), "entries", l.Index().Len(), "dur", time.Since(start))
		m.prefetch(ctx, l, e.run)
		return l, nil
	})
}

// prefetch starts the layer's prefetch and background fetch and waits
// for the prefetch, at most PrefetchTimeout: storage's first look at the
// layer then finds the prioritized files local. The fetching goes on
// after a timeout; the layer's Close stops it.
// run are the paths of the image's default command, fetched with the
// start-up files.
func (m *Manager) prefetch(ctx context.Context, l *Layer, run []string) {
	if m.opts.NoSpeculate {
		run = nil
	}
	done := l.startFetching(fetchOptions{
		prefetch:   !m.opts.NoPrefetch,
		background: !m.opts.NoBackgroundFetch,
		share:      m.opts.BackgroundShare,
		delay:      m.opts.BackgroundDelay,
		startup:    m.startupFiles(),
		command:    run,
	})
	if m.opts.NoPrefetch || l.PrefetchEnd() <= 0 {
		return
	}
	expired := make(chan struct{})
	t := m.clk.AfterFunc(m.opts.PrefetchTimeout, func() { close(expired) })
	defer t.Stop()
	select {
	case <-done:
	case <-expired:
		m.log.Info("prefetch goes on after the lookup", "digest", l.Desc().Digest.String(), "timeout", m.opts.PrefetchTimeout)
	case <-ctx.Done():
	}
}

// scheduleLocked arms the sweep timer to fire at or before at. m.mu must
// be held.
func (m *Manager) scheduleLocked(at time.Time) {
	if m.closed || (m.sweep != nil && !m.sweepAt.After(at)) {
		return
	}
	if m.sweep != nil {
		m.sweep.Stop()
	}
	m.sweepAt = at
	m.sweepN++
	n := m.sweepN
	m.sweep = m.clk.AfterFunc(at.Sub(m.clk.Now()), func() { m.runSweep(n) })
}

// runSweep frees idle layers, forgets expired verdicts and drops images
// nothing pins, then re-arms the timer for the next deadline.
func (m *Manager) runSweep(n uint64) {
	m.mu.Lock()
	if m.closed || n != m.sweepN { // closed, or a timer stopped too late
		m.mu.Unlock()
		return
	}
	m.wg.Add(1) // under mu and before closed: Close waits for us
	defer m.wg.Done()
	m.sweep = nil
	freed, kept, next := m.sweepLocked(m.clk.Now())
	if !next.IsZero() {
		m.scheduleLocked(next)
	}
	m.mu.Unlock()
	for _, st := range freed {
		m.free(st, "idle")
	}
	for _, st := range kept {
		m.log.Info("layer read without a use: kept", "ref", st.ref.String(), "digest", st.blob.String())
	}
}

// Close frees every layer, stops the timers and waits for the work in
// flight to end. It is idempotent.
func (m *Manager) Close() error {
	m.close.Do(func() {
		m.mu.Lock()
		m.closed = true
		if m.sweep != nil {
			m.sweep.Stop()
			m.sweep = nil
		}
		var open []*Layer
		for k, st := range m.layers {
			if st.kind == stateReady && k.d == st.blob {
				open = append(open, st.layer)
			}
			st.kind = stateFreed
		}
		m.layers = map[layerKey]*layerState{}
		m.images = map[refspec.Reference]*imageState{}
		m.mu.Unlock()
		m.resolves.Close()
		m.searches.Close()
		m.opens.Close()
		m.endLife()
		for _, l := range open {
			l.Close()
		}
		m.wg.Wait()
	})
	return nil
}

// startupFiles returns the paths to fetch when a layer without
// prioritized files is first looked up.
func (m *Manager) startupFiles() []string {
	switch {
	case m.opts.NoSpeculate:
		return nil
	case m.opts.StartupFiles == nil:
		return DefaultStartupFiles
	}
	return m.opts.StartupFiles
}
