// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// clock is the time source of the WAN emulation; tests inject a fake one.
type clock interface {
	Now() time.Time
	// SleepUntil waits until t or until ctx is done.
	SleepUntil(ctx context.Context, t time.Time) error
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) SleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// link is one direction of the emulated WAN: a token bucket that paces
// bytes to rate (bytes per second, burst bytes) shared by every connection,
// followed by a fixed one-way delay. It is a virtual clock: reserve tells
// when a chunk finishes leaving the sender; it arrives delay later. Since the
// delay is applied per chunk with timestamps, many chunks are in flight at
// once and throughput is bounded by the rate, not by the delay.
type link struct {
	rate  float64 // bytes per second; 0 means unlimited
	burst int     // token bucket depth in bytes
	delay time.Duration

	mu   sync.Mutex
	next time.Time // when the wire is free again (virtual)
}

func newLink(bitsPerSec float64, delay time.Duration, burst int) *link {
	return &link{rate: bitsPerSec / 8, burst: burst, delay: delay}
}

// reserve books n bytes on the wire at time now and returns when their
// transmission ends (the sender may go on) and when they arrive.
func (l *link) reserve(now time.Time, n int) (sent, arrive time.Time) {
	if l.rate <= 0 {
		return now, now.Add(l.delay)
	}
	l.mu.Lock()
	// A bucket that filled while the wire was idle allows a burst: the
	// virtual start may lie up to burst/rate in the past.
	earliest := now.Add(-time.Duration(float64(l.burst) / l.rate * float64(time.Second)))
	if l.next.Before(earliest) {
		l.next = earliest
	}
	l.next = l.next.Add(time.Duration(float64(n) / l.rate * float64(time.Second)))
	sent = l.next
	l.mu.Unlock()
	if sent.Before(now) {
		sent = now
	}
	return sent, sent.Add(l.delay)
}

// Counters are the bytes and HTTP requests a proxy has carried.
type Counters struct {
	BytesUp   int64 `json:"bytes_up"`   // client to server
	BytesDown int64 `json:"bytes_down"` // server to client
	Requests  int64 `json:"requests"`   // HTTP requests seen client to server
	BlobGets  int64 `json:"blob_gets"`  // GET requests for /v2/.../blobs/...
	RangeGets int64 `json:"range_gets"` // GET requests with a Range header
	Conns     int64 `json:"conns"`      // connections accepted
}

// Sub returns c - o, for the traffic of one measured interval.
func (c Counters) Sub(o Counters) Counters {
	return Counters{c.BytesUp - o.BytesUp, c.BytesDown - o.BytesDown, c.Requests - o.Requests,
		c.BlobGets - o.BlobGets, c.RangeGets - o.RangeGets, c.Conns - o.Conns}
}

// ProxyConfig shapes a proxy's link.
type ProxyConfig struct {
	Delay time.Duration // one-way delay, each direction
	Rate  float64       // bits per second, each direction; 0 = unlimited
	Chunk int           // bytes read and scheduled at once (default 16 KiB)
	Burst int           // token bucket depth in bytes (default 64 KiB)
	// ParseHTTP counts HTTP/1.x requests in the client-to-server stream.
	ParseHTTP bool
}

// Proxy is a TCP proxy that emulates a WAN link between its clients and one
// upstream address. Run owns its goroutines: it returns after every
// connection's goroutines have ended.
type Proxy struct {
	cfg      ProxyConfig
	upstream string
	clk      clock
	up, down *link

	bytesUp, bytesDown, requests, blobGets, rangeGets, conns atomic.Int64
}

// NewProxy returns a proxy to upstream shaped by cfg.
func NewProxy(upstream string, cfg ProxyConfig) *Proxy {
	return newProxy(upstream, cfg, realClock{})
}

func newProxy(upstream string, cfg ProxyConfig, clk clock) *Proxy {
	if cfg.Chunk <= 0 {
		cfg.Chunk = 16 << 10
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 64 << 10
	}
	return &Proxy{cfg: cfg, upstream: upstream, clk: clk,
		up:   newLink(cfg.Rate, cfg.Delay, cfg.Burst),
		down: newLink(cfg.Rate, cfg.Delay, cfg.Burst)}
}

// Counters returns a snapshot of the proxy's counters.
func (p *Proxy) Counters() Counters {
	return Counters{p.bytesUp.Load(), p.bytesDown.Load(), p.requests.Load(),
		p.blobGets.Load(), p.rangeGets.Load(), p.conns.Load()}
}

// Run accepts connections on ln until ctx is done, then closes ln and every
// connection and waits for their goroutines.
func (p *Proxy) Run(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("proxy accept: %w", err)
		}
		p.conns.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.serve(ctx, c)
		}()
	}
}

// serve proxies one connection; it closes both ends when both directions
// are done or when either fails.
func (p *Proxy) serve(ctx context.Context, client net.Conn) {
	defer client.Close()
	var d net.Dialer
	server, err := d.DialContext(ctx, "tcp", p.upstream)
	if err != nil {
		return
	}
	defer server.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { client.Close(); server.Close() })
	defer stop()

	var reqs *requestCounter
	if p.cfg.ParseHTTP {
		reqs = newRequestCounter(p)
		defer reqs.close()
	}
	var wg sync.WaitGroup
	var failed atomic.Bool
	pipe := func(dst, src net.Conn, l *link, n *atomic.Int64, tap *requestCounter) {
		defer wg.Done()
		if err := p.pipe(ctx, dst, src, l, n, tap); err != nil {
			failed.Store(true)
			cancel()
			return
		}
		closeWrite(dst)
	}
	wg.Add(2)
	go pipe(server, client, p.up, &p.bytesUp, reqs)
	go pipe(client, server, p.down, &p.bytesDown, nil)
	wg.Wait()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		c.Close()
	}
}

type packet struct {
	data   []byte
	arrive time.Time
}

// pipe copies src to dst through link l: a reader paces chunks to the rate
// and stamps each with its arrival time; a writer delivers each at that time.
// It returns nil at src's EOF once everything was delivered.
func (p *Proxy) pipe(ctx context.Context, dst, src net.Conn, l *link, n *atomic.Int64, tap *requestCounter) error {
	// Enough room for every chunk in flight during the delay at full rate.
	inflight := 64
	if l.rate > 0 {
		inflight = int(l.rate*l.delay.Seconds())/p.cfg.Chunk + 64
	}
	q := make(chan packet, inflight)
	werr := make(chan error, 1)
	go func() {
		var err error
		for pk := range q {
			if err != nil {
				continue // drain so the reader never blocks
			}
			if err = p.clk.SleepUntil(ctx, pk.arrive); err == nil {
				_, err = dst.Write(pk.data)
			}
		}
		werr <- err
	}()
	var rerr error
	for {
		buf := make([]byte, p.cfg.Chunk)
		k, err := src.Read(buf)
		if k > 0 {
			n.Add(int64(k))
			if tap != nil {
				tap.write(buf[:k])
			}
			sent, arrive := l.reserve(p.clk.Now(), k)
			q <- packet{buf[:k], arrive}
			if err := p.clk.SleepUntil(ctx, sent); err != nil {
				rerr = err
				break
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				rerr = err
			}
			break
		}
	}
	close(q)
	if err := <-werr; err != nil {
		return err
	}
	return rerr
}

// requestCounter parses the client-to-server byte stream as HTTP/1.x
// requests, counting them. A parse error stops counting for the connection
// (the bytes are proxied regardless).
type requestCounter struct {
	pw   *io.PipeWriter
	dead atomic.Bool
	done chan struct{}
}

func newRequestCounter(p *Proxy) *requestCounter {
	pr, pw := io.Pipe()
	rc := &requestCounter{pw: pw, done: make(chan struct{})}
	go func() {
		defer close(rc.done)
		defer pr.Close()
		br := bufio.NewReader(pr)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				rc.dead.Store(true)
				return
			}
			p.requests.Add(1)
			if req.Method == http.MethodGet && isBlobPath(req.URL.Path) {
				p.blobGets.Add(1)
				if req.Header.Get("Range") != "" {
					p.rangeGets.Add(1)
				}
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				rc.dead.Store(true)
				return
			}
		}
	}()
	return rc
}

func (rc *requestCounter) write(b []byte) {
	if rc.dead.Load() {
		return
	}
	if _, err := rc.pw.Write(b); err != nil {
		rc.dead.Store(true)
	}
}

func (rc *requestCounter) close() {
	rc.pw.Close()
	<-rc.done
}

func isBlobPath(path string) bool {
	// /v2/<name>/blobs/<digest>
	for i := 0; i+7 <= len(path); i++ {
		if path[i:i+7] == "/blobs/" {
			return len(path) > i+7
		}
	}
	return false
}
