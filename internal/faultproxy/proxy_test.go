// SPDX-License-Identifier: Apache-2.0

package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"
)

const blobPath = "/v2/x/blobs/sha256:0123"

var blob = bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16) // 64 KiB

// newProxy is a proxy in front of a server of blob (ranges included).
func newProxy(t *testing.T) *Proxy {
	t.Helper()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "blob", time.Time{}, bytes.NewReader(blob))
	}))
	t.Cleanup(backend.Close)
	p, err := Start(Options{Addr: "127.0.0.1:0", Backend: backend.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// get GETs the blob through p with rng as Range header ("" for none).
func get(ctx context.Context, p *Proxy, rng string) (*http.Response, []byte, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL()+blobPath, nil)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func TestProxyPassesThrough(t *testing.T) {
	p := newProxy(t)
	resp, body, err := get(t.Context(), p, "bytes=10-19")
	if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, blob[10:20]) {
		t.Fatalf("GET = %v, %v, %q", resp, err, body)
	}
	if s := p.Stats(); s.Requests != 1 || s.Ranges != 1 || s.Injected != 0 {
		t.Errorf("Stats = %+v", s)
	}
}

func TestProxyFaults(t *testing.T) {
	tests := []struct {
		f     Fault
		check func(resp *http.Response, body []byte, err error) error
	}{
		{Fault{Mode: ModeStatus}, func(resp *http.Response, _ []byte, err error) error {
			return want(err == nil && resp.StatusCode == 503, "503")
		}},
		{Fault{Mode: ModeStatus, Status: 500}, func(resp *http.Response, _ []byte, err error) error {
			return want(err == nil && resp.StatusCode == 500, "500")
		}},
		{Fault{Mode: ModeReset, After: 100}, func(_ *http.Response, body []byte, err error) error {
			return want(errors.Is(err, syscall.ECONNRESET) && len(body) <= 100, "a reset after at most 100 bytes")
		}},
		{Fault{Mode: ModeTruncate, After: 100}, func(_ *http.Response, body []byte, err error) error {
			return want(errors.Is(err, io.ErrUnexpectedEOF) && len(body) == 100, "100 bytes, then the end")
		}},
		{Fault{Mode: ModeIgnoreRange}, func(resp *http.Response, body []byte, err error) error {
			return want(err == nil && resp.StatusCode == 200 && bytes.Equal(body, blob), "200 with the whole blob")
		}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %d", tt.f.Mode, tt.f.Status), func(t *testing.T) {
			p := newProxy(t)
			p.Set(tt.f)
			resp, body, err := get(t.Context(), p, "bytes=0-4095")
			if cerr := tt.check(resp, body, err); cerr != nil {
				t.Errorf("GET = %v, %d bytes, %v: %v", resp, len(body), err, cerr)
			}
			if s := p.Stats(); s.Injected != 1 {
				t.Errorf("Stats = %+v, want 1 injection", s)
			}
		})
	}
}

func want(ok bool, what string) error {
	if ok {
		return nil
	}
	return fmt.Errorf("want %s", what)
}

func TestProxyEveryAndTimes(t *testing.T) {
	p := newProxy(t)
	p.Set(Fault{Mode: ModeStatus, Every: 2, Times: 2})
	var codes []int
	for range 6 {
		resp, _, err := get(t.Context(), p, "bytes=0-9")
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, resp.StatusCode)
	}
	if got := fmt.Sprint(codes); got != "[206 503 206 503 206 206]" {
		t.Errorf("statuses %s, want every second one failed, twice", got)
	}
	if resp, _, _ := get(t.Context(), p, ""); resp.StatusCode != 200 {
		t.Errorf("GET without Range = %d: a range fault applied to it", resp.StatusCode)
	}
}

func TestProxyStallEndsWhenCleared(t *testing.T) {
	p := newProxy(t)
	p.Set(Fault{Mode: ModeStall, After: 10})
	got := make(chan []byte, 1)
	go func() {
		_, body, _ := get(t.Context(), p, "bytes=0-99")
		got <- body
	}()
	waitFor(t, p, func(s Stats) bool { return s.Injected == 1 })
	select {
	case <-got:
		t.Fatal("stalled answer ended by itself")
	default:
	}
	p.Clear()
	if body := <-got; !bytes.Equal(body, blob[:100]) {
		t.Errorf("body after the stall = %q", body)
	}
}

func TestProxyBadMulti(t *testing.T) {
	for _, m := range []Multi{MultiDupHole, MultiOverlap, MultiMissing, MultiGarbage, MultiOutside} {
		t.Run(string(m), func(t *testing.T) {
			p := newProxy(t)
			p.Set(Fault{Mode: ModeBadMulti, Multi: m})
			resp, body, err := get(t.Context(), p, "bytes=10-19,40-49")
			if err != nil || resp.StatusCode != http.StatusPartialContent {
				t.Fatalf("GET = %v, %v", resp, err)
			}
			ranges, perr := parts(resp, body)
			wantRanges := map[Multi]string{MultiDupHole: "[10-14 10-14 40-49]", MultiOverlap: "[10-14 14-19 40-49]",
				MultiMissing: "[10-19]", MultiOutside: "[10-19 40-49 50-50]"}[m]
			if m == MultiGarbage {
				if perr == nil {
					t.Errorf("parts with a garbage boundary = %v, want an error", ranges)
				}
				return
			}
			if perr != nil || fmt.Sprint(ranges) != wantRanges {
				t.Errorf("parts = %v, %v; want %s", ranges, perr, wantRanges)
			}
		})
	}
}

// parts lists the Content-Ranges of a multipart answer ("first-last"),
// checking each part's bytes against blob.
func parts(resp *http.Response, body []byte) ([]string, error) {
	_, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	var out []string
	for {
		pt, err := mr.NextRawPart()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		var first, last, total int64
		if _, err := fmt.Sscanf(pt.Header.Get("Content-Range"), "bytes %d-%d/%d", &first, &last, &total); err != nil {
			return out, err
		}
		data, _ := io.ReadAll(pt)
		if !bytes.Equal(data, blob[first:last+1]) || total != int64(len(blob)) {
			return out, fmt.Errorf("part %d-%d: wrong bytes", first, last)
		}
		out = append(out, fmt.Sprintf("%d-%d", first, last))
	}
}

func TestProxyCutRefuse(t *testing.T) {
	p := newProxy(t)
	if err := p.Cut(CutRefuse, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(t.Context(), p, "bytes=0-9"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("GET during a refusing cut = %v, want connection refused", err)
	}
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	if resp, body, err := get(t.Context(), p, "bytes=0-9"); err != nil || !bytes.Equal(body, blob[:10]) {
		t.Errorf("GET after the cut = %v, %v", resp, err)
	}
}

func TestProxyCutBlackhole(t *testing.T) {
	p := newProxy(t)
	if err := p.Cut(CutBlackhole, 0); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, body, err := get(t.Context(), p, "bytes=0-9")
		if err == nil && !bytes.Equal(body, blob[:10]) {
			err = fmt.Errorf("body %q", body)
		}
		got <- err
	}()
	waitFor(t, p, func(s Stats) bool { return s.Conns == 1 })
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, _, err := get(ctx, p, "bytes=0-9"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("GET during a blackhole = %v, want no answer", err)
	}
	if err := p.Restore(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Errorf("GET held by the blackhole = %v, want it answered once the cut ended", err)
	}
}

func TestProxyControl(t *testing.T) {
	p := newProxy(t)
	ctl := httptest.NewServer(p.ControlHandler())
	defer ctl.Close()
	post := func(path string, q url.Values) int {
		resp, err := http.PostForm(ctl.URL+path, q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := post("/fault", url.Values{"mode": {"status"}, "status": {"502"}, "times": {"1"}}); c != 200 {
		t.Fatalf("POST /fault = %d", c)
	}
	if resp, _, _ := get(t.Context(), p, "bytes=0-9"); resp.StatusCode != 502 {
		t.Errorf("GET after POST /fault = %d, want 502", resp.StatusCode)
	}
	for _, bad := range []url.Values{{"mode": {"nope"}}, {"mode": {"stall"}, "after": {"-1"}}, {"mode": {"bad-multi"}, "multi": {"x"}}} {
		if c := post("/fault", bad); c != http.StatusBadRequest {
			t.Errorf("POST /fault %v = %d, want 400", bad, c)
		}
	}
	if c := post("/cut", url.Values{"kind": {"refuse"}, "seconds": {"0.05"}}); c != 200 {
		t.Fatalf("POST /cut = %d", c)
	}
	waitFor(t, p, func(s Stats) bool { return s.Cut == "" }) // ends by itself
	if c := post("/clear", nil); c != 200 {
		t.Errorf("POST /clear = %d", c)
	}
	resp, err := http.Get(ctl.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"injected":1`) {
		t.Errorf("GET /stats = %s", b)
	}
}

// waitFor waits until cond holds for the proxy's stats.
func waitFor(t *testing.T, p *Proxy, cond func(Stats) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := p.Await(ctx, cond); err != nil {
		t.Fatal(err)
	}
}
