// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLinkReserve(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := time.Millisecond
	// 8000 bit/s = 1000 B/s, burst 100 B, delay 20 ms.
	l := newLink(8000, 20*ms, 100)

	// An idle link lets burst bytes through at once.
	sent, arrive := l.reserve(t0, 100)
	if !sent.Equal(t0) || !arrive.Equal(t0.Add(20*ms)) {
		t.Fatalf("burst: sent %v arrive %v", sent.Sub(t0), arrive.Sub(t0))
	}
	// The bucket is empty now: 100 more bytes take 100 ms.
	sent, arrive = l.reserve(t0, 100)
	if !sent.Equal(t0.Add(100*ms)) || !arrive.Equal(t0.Add(120*ms)) {
		t.Fatalf("paced: sent %v arrive %v", sent.Sub(t0), arrive.Sub(t0))
	}
	// Queued behind the previous chunk, not delayed by its delay: chunks
	// pipeline, so the rate is not capped by the delay.
	sent, arrive = l.reserve(t0.Add(10*ms), 50)
	if !sent.Equal(t0.Add(150*ms)) || !arrive.Equal(t0.Add(170*ms)) {
		t.Fatalf("queued: sent %v arrive %v", sent.Sub(t0), arrive.Sub(t0))
	}
	// After a long idle time the bucket holds at most burst bytes.
	t1 := t0.Add(10 * time.Second)
	sent, _ = l.reserve(t1, 300)
	if want := t1.Add(200 * ms); !sent.Equal(want) {
		t.Fatalf("after idle: sent %v, want %v", sent.Sub(t1), want.Sub(t1))
	}

	// Unlimited rate: only the delay.
	u := newLink(0, 5*ms, 0)
	sent, arrive = u.reserve(t0, 1<<30)
	if !sent.Equal(t0) || !arrive.Equal(t0.Add(5*ms)) {
		t.Fatalf("unlimited: sent %v arrive %v", sent.Sub(t0), arrive.Sub(t0))
	}
}

// startProxy runs a proxy to upstream until the test ends and checks that
// Run returns once cancelled.
func startProxy(t *testing.T, upstream string, cfg ProxyConfig) (*Proxy, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := NewProxy(upstream, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
	return p, ln.Addr().String()
}

// echoServer echoes each connection until EOF, then closes it.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	serveEach(ln, &wg, func(c net.Conn) { io.Copy(c, c) })
	return ln.Addr().String()
}

// sinkServer reads each connection to EOF, then writes n random bytes
// (reported on sent) and closes.
func sinkServer(t *testing.T, n int, sent chan<- []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	serveEach(ln, &wg, func(c net.Conn) {
		io.Copy(io.Discard, c)
		b := make([]byte, n)
		rand.Read(b)
		c.Write(b)
		sent <- b
	})
	return ln.Addr().String()
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func TestProxyDelay(t *testing.T) {
	const delay = 25 * time.Millisecond
	_, addr := startProxy(t, echoServer(t), ProxyConfig{Delay: delay, Rate: 200e6})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var rtts []time.Duration
	b := []byte{'x'}
	for range 9 {
		start := time.Now()
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, b); err != nil {
			t.Fatal(err)
		}
		rtts = append(rtts, time.Since(start))
	}
	// Each ping crosses the link twice. The lower bound is exact (the proxy
	// sleeps until each chunk's arrival time); the upper one is loose.
	for _, r := range rtts {
		if r < 2*delay {
			t.Fatalf("RTT %v < 2 × delay %v", r, 2*delay)
		}
	}
	if ratio := float64(median(rtts)) / float64(2*delay); ratio > 3 {
		t.Fatalf("median RTT %v is %.1f × 2 × delay", median(rtts), ratio)
	}
}

func TestProxyRateNotCappedByDelay(t *testing.T) {
	const (
		n     = 1 << 20 // 1 MiB down
		rate  = 16e6    // bit/s: 2 MB/s, so about 0.5 s
		delay = 40 * time.Millisecond
		burst = 64 << 10
	)
	sent := make(chan []byte, 1)
	p, addr := startProxy(t, sinkServer(t, n, sent), ProxyConfig{Delay: delay, Rate: rate, Burst: burst, Chunk: 8 << 10})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	start := time.Now()
	got, err := io.ReadAll(c) // ends at EOF: the server's close crossed the proxy
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if want := <-sent; !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes, want the server's %d", len(got), len(want))
	}
	// The time from the first byte: at least (n - burst) / rate; with
	// 8 KiB chunks and a 40 ms delay a stop-and-wait proxy would need 5 s.
	ideal := time.Duration(float64(n) / (rate / 8) * float64(time.Second))
	lower := time.Duration(float64(n-burst) / (rate / 8) * float64(time.Second))
	if elapsed < lower {
		t.Fatalf("1 MiB took %v, faster than the rate allows (%v)", elapsed, lower)
	}
	if ratio := float64(elapsed) / float64(ideal+2*delay); ratio > 2.5 {
		t.Fatalf("1 MiB took %v, %.1f × the ideal %v: throughput capped", elapsed, ratio, ideal+2*delay)
	}
	// Bytes are counted exactly: 5 up, n down.
	waitCounters(t, p, func(c Counters) bool { return c.BytesUp == 5 && c.BytesDown == n && c.Conns == 1 })
}

func waitCounters(t *testing.T, p *Proxy, ok func(Counters) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok(p.Counters()) {
		if time.Now().After(deadline) {
			t.Fatalf("counters: %+v", p.Counters())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestProxyCountsBytesExactly(t *testing.T) {
	p, addr := startProxy(t, echoServer(t), ProxyConfig{Delay: time.Millisecond, Rate: 1e9})
	var wg sync.WaitGroup
	var total int64
	var mu sync.Mutex
	errs := make(chan error, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			size := 100_000*(i+1) + i
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			msg := make([]byte, size)
			rand.Read(msg)
			go func() {
				c.Write(msg)
				c.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, msg) {
				errs <- fmt.Errorf("conn %d: echo differs (%d of %d bytes)", i, len(got), size)
				return
			}
			mu.Lock()
			total += int64(size)
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	waitCounters(t, p, func(c Counters) bool {
		return c.BytesUp == total && c.BytesDown == total && c.Conns == 4
	})
}

func TestProxyCountsHTTPRequests(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%s %s", r.Method, r.URL.Path)
	}))
	defer srv.Close()
	p, addr := startProxy(t, strings.TrimPrefix(srv.URL, "http://"), ProxyConfig{Delay: time.Millisecond, Rate: 1e9, ParseHTTP: true})
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr}
	do := func(method, path, rng string, body io.Reader) {
		req, err := http.NewRequest(method, "http://"+addr+path, body)
		if err != nil {
			t.Fatal(err)
		}
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	do("GET", "/v2/", "", nil)
	do("HEAD", "/v2/a/manifests/x", "", nil)
	// A body that looks like requests must not be counted as requests.
	do("PUT", "/v2/a/blobs/uploads/1", "", strings.NewReader(strings.Repeat("GET /v2/ HTTP/1.1\r\n\r\n", 1000)))
	do("GET", "/v2/a/blobs/sha256:abc", "", nil)
	do("GET", "/v2/a/blobs/sha256:abc", "bytes=0-9", nil)
	tr.CloseIdleConnections()
	waitCounters(t, p, func(c Counters) bool {
		return c.Requests == 5 && c.BlobGets == 2 && c.RangeGets == 1
	})
}

func TestProxyClosesCleanly(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		up := echoServer(t)
		p := NewProxy(up, ProxyConfig{Delay: 5 * time.Millisecond, Rate: 1e8})
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx, ln) }()

		// A client that half-closes gets the echo and then EOF.
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("ping"))
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "ping" {
			t.Fatalf("half-close: got %q, %v", got, err)
		}
		c.Close()

		// A connection still open when the proxy stops is closed by it.
		c2, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		c2.Write([]byte("x"))
		b := make([]byte, 1)
		if _, err := io.ReadFull(c2, b); err != nil {
			t.Fatal(err)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return")
		}
		c2.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c2.Read(b); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("open connection after stop: %v, want EOF", err)
		}
	}()
	// Every goroutine of the proxy has ended (echo servers stop at cleanup,
	// so allow theirs).
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+3 {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d before, %d after", before, runtime.NumGoroutine())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}
