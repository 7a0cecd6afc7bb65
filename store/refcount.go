// SPDX-License-Identifier: Apache-2.0

package store

import (
	"fmt"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/store/remote"
)

// layerKey is how storage names a layer: the reference and the directory
// name it used, a blob digest (Gen A) or a TOC digest (Gen B).
type layerKey struct {
	ref refspec.Reference
	d   digest.Digest
}

// stateKind is where a layer is in its life.
//
//	pending --open--> ready --release to 0 / idle--> freed
//	(absent) --open fails as not lazy--> notLazy --TTL--> (absent, or pending if used)
type stateKind uint8

const (
	// statePending: storage uses the name but the layer is not open (Use
	// came first, e.g. after a restart). Counts only.
	statePending stateKind = iota
	// stateReady: the layer is open.
	stateReady
	// stateNotLazy: the layer cannot be served lazily; the verdict holds
	// until until.
	stateNotLazy
	// stateFreed: dropped from the map; a holder of the pointer must not
	// use it.
	stateFreed
)

// layerState is one layer's entry in Manager.layers, stored under each of
// its names. Guarded by Manager.mu.
type layerState struct {
	kind     stateKind
	ref      refspec.Reference
	blob     digest.Digest   // "" while pending
	names    []digest.Digest // the keys it is stored under; names[0] is the blob digest when known
	layer    *Layer          // stateReady
	img      *imageState     // stateReady: the image it pins, if cached
	err      error           // stateNotLazy
	until    time.Time       // stateNotLazy
	refs     map[digest.Digest]int
	lastUsed time.Time    // stateReady: last lookup; statePending: when created
	remote   *remote.Blob // stateReady: the layer's blob reader
	reads    int64        // stateReady: remote.Reads() when the layer opened
	kept     bool         // stateReady: read without a use; never idle-freed
}

// readSince reports whether the layer's blob was read since it opened,
// i.e. whether its files were read.
func (st *layerState) readSince() bool {
	return st.remote != nil && st.remote.Reads() > st.reads
}

func (st *layerState) total() int {
	n := 0
	for _, c := range st.refs {
		n += c
	}
	return n
}

// Use records that storage uses the layer ref/d (it created <layer>/use).
// A name not resolved yet is counted too, and the count joins the layer
// when it opens. The Manager keeps a used layer open until its count drops
// to 0.
func (m *Manager) Use(ref refspec.Reference, d digest.Digest) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errClosed
	}
	k := layerKey{ref, d}
	st := m.layers[k]
	var dropped *layerState
	if st == nil {
		dropped = m.oldestPendingLocked(maxPending)
		if dropped != nil {
			m.removeLocked(dropped)
		}
		now := m.clk.Now()
		st = &layerState{kind: statePending, ref: ref, names: []digest.Digest{d}, refs: map[digest.Digest]int{}, lastUsed: now}
		m.layers[k] = st
		m.pending++
		m.scheduleLocked(now.Add(m.opts.IdleTimeout))
	}
	st.refs[d]++
	n := st.refs[d]
	m.mu.Unlock()
	if dropped != nil {
		m.log.Debug("too many uses of layers never opened: forgetting the oldest", "ref", dropped.ref.String(), "digest", dropped.names[0].String(), "max", maxPending)
	}
	m.log.Info("use", "ref", ref.String(), "digest", d.String(), "refs", n)
	return nil
}

// A use of a name that is not open (storage's use after a restart, or a
// name no image has) is counted in a pending state until the layer opens.
// Nothing proves such a name exists, so pending states are bounded: one
// that has not opened within IdleTimeout is forgotten, and at most
// maxPending are kept (the oldest goes first). Forgetting one loses only a
// count: a layer whose files are read is kept anyway (see sweepLocked).
const maxPending = 1024

// oldestPendingLocked returns the oldest pending state when there are
// max of them already, else nil. m.mu must be held.
func (m *Manager) oldestPendingLocked(max int) *layerState {
	if m.pending < max {
		return nil
	}
	var old *layerState
	for k, st := range m.layers {
		if st.kind == statePending && k.d == st.names[0] && (old == nil || st.lastUsed.Before(old.lastUsed)) {
			old = st
		}
	}
	return old
}

// Release drops one use of ref/d (storage removed the layer directory).
// When no name of the layer is used any more, the layer is freed. Release
// of a name not in use (e.g. after a restart) returns ErrNotFound.
func (m *Manager) Release(ref refspec.Reference, d digest.Digest) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errClosed
	}
	k := layerKey{ref, d}
	st := m.layers[k]
	if st == nil || st.refs[d] == 0 {
		m.mu.Unlock()
		m.log.Debug("release of a layer not in use", "ref", ref.String(), "digest", d.String())
		return fmt.Errorf("release %s of %s: %w", d, ref, ErrNotFound)
	}
	st.refs[d]--
	n := st.refs[d]
	if n == 0 {
		delete(st.refs, d)
	}
	freed := false
	if st.total() == 0 {
		switch st.kind {
		case stateReady:
			m.removeLocked(st)
			freed = true
		case statePending:
			m.removeLocked(st)
		}
	}
	m.mu.Unlock()
	m.log.Info("release", "ref", ref.String(), "digest", d.String(), "refs", n)
	if freed {
		m.free(st, "released")
	}
	return nil
}

// ready installs the open layer l under all names of e, taking over the
// counts of names used before it opened. m.mu must not be held.
func (m *Manager) ready(e layerEntry, l *Layer, rb *remote.Blob) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errClosed
	}
	now := m.clk.Now()
	st := &layerState{kind: stateReady, layer: l, lastUsed: now, remote: rb, reads: rb.Reads()}
	m.installLocked(st, e)
	if is := m.images[st.ref]; is != nil {
		is.open++
		st.img = is
	}
	if st.total() == 0 {
		m.scheduleLocked(now.Add(m.opts.IdleTimeout))
	}
	return nil
}

// notLazy remembers for NotLazyTTL that e cannot be served lazily and
// returns err. Layer logs it.
func (m *Manager) notLazy(e layerEntry, err error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed {
		until := m.clk.Now().Add(m.opts.NotLazyTTL)
		m.installLocked(&layerState{kind: stateNotLazy, err: err, until: until}, e)
		m.scheduleLocked(until)
	}
	return err
}

// installLocked stores st under every name of e, merging the counts of
// states it replaces.
func (m *Manager) installLocked(st *layerState, e layerEntry) {
	st.ref, st.blob = e.desc.Ref, e.desc.Digest
	st.refs = map[digest.Digest]int{}
	st.names = []digest.Digest{e.desc.Digest}
	for _, d := range []digest.Digest{e.desc.TOCDigest, e.zstd} {
		if d != "" && d != e.desc.Digest {
			st.names = append(st.names, d)
		}
	}
	for _, d := range st.names {
		k := layerKey{st.ref, d}
		if old := m.layers[k]; old != nil && old != st {
			for n, c := range old.refs {
				st.refs[n] += c
			}
			if old.kind == statePending {
				m.pending--
			}
			old.kind = stateFreed
		}
		m.layers[k] = st
	}
}

// removeLocked drops st from the map.
func (m *Manager) removeLocked(st *layerState) {
	if st.kind == statePending {
		m.pending--
	}
	for _, d := range st.names {
		k := layerKey{st.ref, d}
		if m.layers[k] == st {
			delete(m.layers, k)
		}
	}
	if is := st.img; st.kind == stateReady && is != nil {
		st.img = nil
		is.open--
		if is.open == 0 {
			now := m.clk.Now()
			is.lastUsed = now
			m.scheduleLocked(now.Add(m.opts.IdleTimeout))
		}
	}
	st.kind = stateFreed
}

// free closes a layer removed from the map.
func (m *Manager) free(st *layerState, why string) {
	st.layer.Close()
	d := st.layer.Desc()
	m.log.Info("layer freed", "ref", st.ref.String(), "digest", d.Digest.String(), "toc", d.TOCDigest.String(), "reason", why)
}

// sweepLocked frees ready layers unused (and unread) for IdleTimeout, forgets expired
// not-lazy verdicts and drops unpinned images idle for IdleTimeout. It
// returns the layers to close (outside the lock) and the next deadline,
// zero if none.
func (m *Manager) sweepLocked(now time.Time) (freed, kept []*layerState, next time.Time) {
	later := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for k, st := range m.layers {
		if k.d != st.names[0] { // visit each state once
			continue
		}
		switch st.kind {
		case stateReady:
			if st.total() > 0 {
				continue
			}
			if at := st.lastUsed.Add(m.opts.IdleTimeout); now.Before(at) {
				later(at)
				continue
			}
			if st.readSince() {
				// Files were read, so something mounted it: storage holds a
				// use from before a restart. Freeing it would break running
				// containers; keep it until a restart.
				if !st.kept {
					st.kept = true
					kept = append(kept, st)
				}
				continue
			}
			m.removeLocked(st)
			freed = append(freed, st)
		case stateNotLazy:
			if now.Before(st.until) {
				later(st.until)
				continue
			}
			if st.total() > 0 {
				st.kind, st.err, st.lastUsed = statePending, nil, now // keep storage's counts
				m.pending++
				later(now.Add(m.opts.IdleTimeout))
				continue
			}
			m.removeLocked(st)
		case statePending:
			if at := st.lastUsed.Add(m.opts.IdleTimeout); now.Before(at) {
				later(at)
				continue
			}
			m.removeLocked(st)
		}
	}
	for ref, is := range m.images {
		if is.open > 0 {
			continue
		}
		if at := is.lastUsed.Add(m.opts.IdleTimeout); now.Before(at) {
			later(at)
			continue
		}
		delete(m.images, ref)
	}
	return freed, kept, next
}
