// SPDX-License-Identifier: Apache-2.0

// Package faultproxy is an HTTP proxy to put in front of a registry in
// tests: it forwards every request to the registry and, when told to,
// injects the faults a registry and the network in between produce:
// error answers, connection resets, truncated and stalled bodies, a 200
// with the whole blob for a range request, malformed multi-range answers,
// and cuts (connections refused, or a blackhole where nothing moves) for
// a while or for good. Faults switch at run time, from Go (Set, Cut) or
// through a small HTTP control API (ControlHandler), which the test
// binary tests/faultproxy serves to the bats tests.
//
// It is test infrastructure: nothing in the product imports it. It owns
// every goroutine it starts; Close stops them.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// Mode is the kind of fault injected into a request.
type Mode string

const (
	// ModeStatus answers Fault.Status (503 if 0) without asking the
	// registry.
	ModeStatus Mode = "status"
	// ModeReset sends Fault.After bytes of the answer's body, then resets
	// the connection (TCP RST).
	ModeReset Mode = "reset"
	// ModeTruncate sends Fault.After bytes of the body, then closes the
	// connection: the client sees a body shorter than its Content-Length.
	ModeTruncate Mode = "truncate"
	// ModeStall sends Fault.After bytes of the body, then nothing until
	// the fault is changed or cleared (then the rest), or the client
	// leaves.
	ModeStall Mode = "stall"
	// ModeIgnoreRange serves a range request as if it had no Range
	// header: 200 with the whole blob.
	ModeIgnoreRange Mode = "ignore-range"
	// ModeBadMulti answers a multi-range request with a malformed
	// multipart answer, as Fault.Multi says; other requests pass.
	ModeBadMulti Mode = "bad-multi"
)

// Multi is how ModeBadMulti spoils a multi-range answer.
type Multi string

const (
	// MultiDupHole sends the first half of the first range twice and
	// leaves its second half out.
	MultiDupHole Multi = "dup-hole"
	// MultiOverlap splits the first range into two overlapping parts: a
	// correct answer a client must not count twice.
	MultiOverlap Multi = "overlap"
	// MultiMissing leaves the last range out.
	MultiMissing Multi = "missing"
	// MultiGarbage announces a boundary the body does not use.
	MultiGarbage Multi = "garbage"
	// MultiOutside adds a part outside the ranges asked for.
	MultiOutside Multi = "outside"
)

// Match selects the requests a fault applies to.
type Match string

const (
	// MatchRange is blob GETs with a Range header (the default): a lazy
	// store's reads, not a runtime's pulls.
	MatchRange Match = "range"
	// MatchBlob is every blob GET.
	MatchBlob Match = "blob"
	// MatchManifest is manifest GETs.
	MatchManifest Match = "manifest"
	// MatchAll is every request.
	MatchAll Match = "all"
)

// Fault is the fault injected into matching requests. The zero value
// injects nothing.
type Fault struct {
	Mode   Mode  `json:"mode"`
	Match  Match `json:"match,omitempty"`  // "" is MatchRange
	Every  int   `json:"every,omitempty"`  // every Nth matching request; 0 or 1: each
	Times  int   `json:"times,omitempty"`  // at most this many injections; 0: no limit
	After  int64 `json:"after,omitempty"`  // body bytes sent before a body fault
	Status int   `json:"status,omitempty"` // ModeStatus; 0 is 503
	Multi  Multi `json:"multi,omitempty"`  // ModeBadMulti; "" is MultiDupHole
}

// Cut is a network cut between the clients and the proxy.
type Cut string

const (
	// CutRefuse closes the listening socket and resets every open
	// connection: connections are refused, as when the registry is down.
	CutRefuse Cut = "refuse"
	// CutBlackhole keeps accepting but moves no byte on any connection,
	// old or new, until the cut ends: a network that drops packets (TCP
	// retransmits them once it is back, so held exchanges then go on).
	CutBlackhole Cut = "blackhole"
)

// Stats counts what the proxy saw.
type Stats struct {
	Requests int    `json:"requests"` // requests received
	Ranges   int    `json:"ranges"`   // of which blob GETs with a Range header
	Injected int    `json:"injected"` // requests a fault was injected into
	Conns    int    `json:"conns"`    // connections accepted
	Cut      Cut    `json:"cut,omitempty"`
	Fault    *Fault `json:"fault,omitempty"`
}

// Options configure Start.
type Options struct {
	// Addr is where to listen, e.g. "127.0.0.1:0".
	Addr string
	// Backend is the registry's base URL, e.g. "http://127.0.0.1:5000".
	Backend string
	// Logger hears of faults set and injected, and of cuts; nil discards.
	Logger *slog.Logger
}

// Proxy is a running fault-injecting proxy. Safe for concurrent use.
type Proxy struct {
	addr    string // host:port, kept across refused cuts
	backend *url.URL
	tr      *http.Transport
	srv     *http.Server
	conns   chan net.Conn // accepted connections, to srv
	log     *slog.Logger
	done    chan struct{} // closed by Close
	wg      sync.WaitGroup

	// mu guards the fields below.
	mu       sync.Mutex
	ln       net.Listener // nil while a refusing cut lasts
	open     map[*gateConn]struct{}
	fault    Fault
	matched  int           // matching requests under the current fault
	injected int           // injections of the current fault
	release  chan struct{} // closed when the current fault changes: ends its stalls
	cut      Cut
	gate     chan struct{} // closed when the current blackhole ends
	timer    *time.Timer   // ends the current cut, if timed
	stats    Stats
	changed  chan struct{} // closed and replaced when stats change
	closed   bool
}

// Start listens on opts.Addr and serves until Close.
func Start(opts Options) (*Proxy, error) {
	backend, err := url.Parse(opts.Backend)
	if err != nil || backend.Host == "" {
		return nil, fmt.Errorf("faultproxy: backend %q is not a URL", opts.Backend)
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("faultproxy: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{
		addr:    ln.Addr().String(),
		backend: backend,
		tr:      &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 16},
		conns:   make(chan net.Conn),
		log:     log,
		done:    make(chan struct{}),
		ln:      ln,
		open:    map[*gateConn]struct{}{},
		release: make(chan struct{}),
		changed: make(chan struct{}),
	}
	p.srv = &http.Server{Handler: p, ErrorLog: nil}
	p.wg.Go(func() { p.srv.Serve(connListener{p}) })
	p.wg.Go(func() { p.accept(ln) })
	return p, nil
}

// Addr returns host:port of the proxy.
func (p *Proxy) Addr() string { return p.addr }

// URL returns http://Addr.
func (p *Proxy) URL() string { return "http://" + p.addr }

// Set makes f the fault injected from now on; stalls of the previous one
// end.
func (p *Proxy) Set(f Fault) {
	if f.Match == "" {
		f.Match = MatchRange
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	close(p.release)
	p.release = make(chan struct{})
	p.fault, p.matched, p.injected = f, 0, 0
	p.changedLocked()
	p.log.Info("fault set", "mode", f.Mode, "match", f.Match, "every", f.Every, "times", f.Times, "after", f.After)
}

// Clear stops injecting faults; stalls end.
func (p *Proxy) Clear() { p.Set(Fault{}) }

// Stats returns the counts so far, the current cut and fault.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Cut = p.cut
	if p.fault.Mode != "" {
		f := p.fault
		s.Fault = &f
	}
	return s
}

// Await blocks until cond holds for the proxy's Stats, or ctx ends.
func (p *Proxy) Await(ctx context.Context, cond func(Stats) bool) error {
	for {
		p.mu.Lock()
		ch := p.changed
		p.mu.Unlock()
		if cond(p.Stats()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("faultproxy: %w waiting; stats %+v", ctx.Err(), p.Stats())
		}
	}
}

// changedLocked wakes the Await calls. p.mu must be held.
func (p *Proxy) changedLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// Close ends every cut, fault, connection and goroutine of the proxy. It
// is idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.done)
	if p.timer != nil {
		p.timer.Stop()
	}
	ln := p.ln
	p.ln = nil
	open := make([]*gateConn, 0, len(p.open))
	for c := range p.open {
		open = append(open, c)
	}
	p.mu.Unlock()
	for _, c := range open {
		c.Close()
	}
	if ln != nil {
		ln.Close()
	}
	err := p.srv.Close()
	p.wg.Wait()
	p.tr.CloseIdleConnections()
	return err
}

// connListener hands the accepted (gated) connections to the server.
type connListener struct{ p *Proxy }

func (l connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.p.conns:
		return c, nil
	case <-l.p.done:
		return nil, net.ErrClosed
	}
}

func (l connListener) Close() error   { return nil }
func (l connListener) Addr() net.Addr { return fakeAddr(l.p.addr) }

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }

// accept accepts on ln until it is closed (Close, or a refusing cut).
func (p *Proxy) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		gc := &gateConn{Conn: c, p: p, closed: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.open[gc] = struct{}{}
		p.stats.Conns++
		p.changedLocked()
		p.mu.Unlock()
		select {
		case p.conns <- gc:
		case <-p.done:
			gc.Close()
			return
		}
	}
}

var errClosed = errors.New("faultproxy: closed")
