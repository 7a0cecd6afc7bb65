// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// emulation is the check of the WAN emulation itself.
type emulation struct {
	DelayMs  float64 `json:"delay_ms"`  // configured, one way
	RateMbit float64 `json:"rate_mbit"` // configured, each way
	// A 1-byte ping through a proxy shaped like the registry's, to an
	// in-process echo server: median and min of 20.
	PingMs    float64 `json:"ping_rtt_ms"`
	PingMinMs float64 `json:"ping_rtt_min_ms"`
	// Bulk transfers of BulkBytes through that proxy, each direction.
	BulkBytes int64   `json:"bulk_bytes"`
	DownMbit  float64 `json:"bulk_down_mbit"`
	UpMbit    float64 `json:"bulk_up_mbit"`
	// Through the registry's proxy: GET /v2/ round trips (median of 10,
	// keep-alive) via the proxy and directly, and a blob download.
	HTTPMs       float64 `json:"http_rtt_ms"`
	HTTPDirectMs float64 `json:"http_rtt_direct_ms"`
	BlobBytes    int64   `json:"blob_bytes"`
	BlobMbit     float64 `json:"blob_down_mbit"`
}

func (e *emulation) String() string {
	var s strings.Builder
	fmt.Fprintf(&s, "   configured: %.1f ms one way (RTT %.1f ms), %.0f Mbit/s each way\n", e.DelayMs, 2*e.DelayMs, e.RateMbit)
	fmt.Fprintf(&s, "   ping through the link: median %.1f ms, min %.1f ms\n", e.PingMs, e.PingMinMs)
	fmt.Fprintf(&s, "   bulk %s: down %.1f Mbit/s, up %.1f Mbit/s\n", mib(e.BulkBytes), e.DownMbit, e.UpMbit)
	fmt.Fprintf(&s, "   registry GET /v2/: %.1f ms through the proxy, %.1f ms direct\n", e.HTTPMs, e.HTTPDirectMs)
	if e.BlobBytes > 0 {
		fmt.Fprintf(&s, "   registry blob GET %s: %.1f Mbit/s\n", mib(e.BlobBytes), e.BlobMbit)
	}
	return s.String()
}

func (b *bench) checkEmulation(ctx context.Context, big *image, imgs []*image) (*emulation, error) {
	e := &emulation{DelayMs: float64(b.opt.delay) / 1e6, RateMbit: b.opt.rateMbit, BulkBytes: 48 << 20}
	if err := checkLink(ctx, b.opt.proxyConfig(false), e); err != nil {
		return nil, err
	}
	var err error
	if e.HTTPMs, err = httpRTT(ctx, "http://"+b.wanAddr+"/v2/"); err != nil {
		return nil, err
	}
	if e.HTTPDirectMs, err = httpRTT(ctx, "http://"+b.regAddr+"/v2/"); err != nil {
		return nil, err
	}
	// The largest gzip blob of the images.
	var name, blob string
	var size int64
	for _, img := range append([]*image{big}, imgs...) {
		if img == nil {
			continue
		}
		ls, err := b.manifest(ctx, img.Name, "gzip")
		if err != nil {
			return nil, err
		}
		for _, l := range ls {
			if l.Size > size {
				name, blob, size = img.Name, l.Digest, l.Size
			}
		}
	}
	if blob != "" {
		t0 := time.Now()
		n, err := httpGet(ctx, "http://"+b.wanAddr+"/v2/bench/"+name+"/blobs/"+blob)
		if err != nil {
			return nil, err
		}
		e.BlobBytes, e.BlobMbit = n, float64(n)*8/time.Since(t0).Seconds()/1e6
	}
	return e, nil
}

func httpGet(ctx context.Context, url string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return n, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return n, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return n, nil
}

// httpRTT is the median time of 10 GETs on one kept-alive connection (after
// one to open it).
func httpRTT(ctx context.Context, url string) (float64, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr}
	var ds []float64
	for i := range 11 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, err
		}
		t0 := time.Now()
		resp, err := cl.Do(req)
		if err != nil {
			return 0, fmt.Errorf("GET %s: %w", url, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if i > 0 {
			ds = append(ds, float64(time.Since(t0))/1e6)
		}
	}
	return medianF(ds), nil
}

// serveEach accepts connections on ln until it is closed and runs handle
// on each in a goroutine of its own, closing the connection afterwards. wg
// counts the accept loop and every handler, so Wait after closing ln waits
// for all of them.
func serveEach(ln net.Listener, wg *sync.WaitGroup, handle func(net.Conn)) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

// checkLink measures ping and bulk rates through a proxy shaped by cfg to
// an in-process server that speaks a tiny protocol: 'p' echoes one byte,
// 'd' N sends N bytes, 'u' N reads N bytes and answers one.
func checkLink(ctx context.Context, cfg ProxyConfig, e *emulation) error {
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("emulation check: %w", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer srv.Close()
	serveEach(srv, &wg, serveCheck)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("emulation check: %w", err)
	}
	p := NewProxy(srv.Addr().String(), cfg)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() { defer wg.Done(); p.Run(pctx, ln) }()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return fmt.Errorf("emulation check: %w", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	var rtts []float64
	one := []byte{0}
	for range 20 {
		t0 := time.Now()
		if _, err := c.Write([]byte{'p', 1}); err != nil {
			return fmt.Errorf("emulation ping: %w", err)
		}
		if _, err := io.ReadFull(c, one); err != nil {
			return fmt.Errorf("emulation ping: %w", err)
		}
		rtts = append(rtts, float64(time.Since(t0))/1e6)
	}
	e.PingMs = medianF(rtts)
	e.PingMinMs = rtts[0]
	for _, r := range rtts {
		e.PingMinMs = min(e.PingMinMs, r)
	}
	hdr := make([]byte, 9)
	binary.BigEndian.PutUint64(hdr[1:], uint64(e.BulkBytes))

	hdr[0] = 'd'
	t0 := time.Now()
	if _, err := c.Write(hdr); err != nil {
		return fmt.Errorf("emulation down: %w", err)
	}
	if _, err := io.CopyN(io.Discard, c, e.BulkBytes); err != nil {
		return fmt.Errorf("emulation down: %w", err)
	}
	e.DownMbit = float64(e.BulkBytes) * 8 / time.Since(t0).Seconds() / 1e6

	hdr[0] = 'u'
	t0 = time.Now()
	if _, err := c.Write(hdr); err != nil {
		return fmt.Errorf("emulation up: %w", err)
	}
	if _, err := io.CopyN(c, zeros{}, e.BulkBytes); err != nil {
		return fmt.Errorf("emulation up: %w", err)
	}
	if _, err := io.ReadFull(c, one); err != nil {
		return fmt.Errorf("emulation up: %w", err)
	}
	e.UpMbit = float64(e.BulkBytes) * 8 / time.Since(t0).Seconds() / 1e6
	return nil
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func serveCheck(c net.Conn) {
	hdr := make([]byte, 9)
	for {
		if _, err := io.ReadFull(c, hdr[:1]); err != nil {
			return
		}
		switch hdr[0] {
		case 'p':
			if _, err := io.ReadFull(c, hdr[1:2]); err != nil {
				return
			}
			if _, err := c.Write(hdr[1:2]); err != nil {
				return
			}
		case 'd', 'u':
			if _, err := io.ReadFull(c, hdr[1:]); err != nil {
				return
			}
			n := int64(binary.BigEndian.Uint64(hdr[1:]))
			if hdr[0] == 'd' {
				if _, err := io.CopyN(c, zeros{}, n); err != nil {
					return
				}
			} else {
				if _, err := io.CopyN(io.Discard, c, n); err != nil {
					return
				}
				if _, err := c.Write([]byte{1}); err != nil {
					return
				}
			}
		default:
			return
		}
	}
}
