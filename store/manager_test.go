// SPDX-License-Identifier: Apache-2.0

package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
)

// fakeClock is a clock whose time moves only in Advance, which runs the
// timers that come due on the calling goroutine.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	f       func()
	stopped bool // or fired
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1700000000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) stopper {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped
	t.stopped = true
	return was
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var due *fakeTimer
		for _, t := range c.timers {
			if !t.stopped && !t.at.After(c.now) {
				due = t
				break
			}
		}
		if due != nil {
			due.stopped = true
		}
		c.mu.Unlock()
		if due == nil {
			return
		}
		due.f()
	}
}

// env is a registry, a Manager reading from it and what they logged.
type env struct {
	reg  *testutil.Registry
	m    *Manager
	logs *testutil.Logs
	clk  *fakeClock
}

type envOptions struct {
	user, pass string // credentials in the auth file
	opts       func(*Options)
}

func newEnv(t *testing.T, eo envOptions) *env {
	t.Helper()
	testutil.CheckLeaks(t)
	e := &env{reg: testutil.NewRegistry(t), clk: newFakeClock()}
	regs, err := registryauth.New(registryauth.Options{
		AuthFile:          e.reg.AuthFile(t, eo.user, eo.pass),
		RegistriesConf:    e.reg.RegistriesConf(t),
		RegistriesConfDir: t.TempDir(),
		CertDir:           t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { regs.Close() })
	log, logs := testutil.NewLogger()
	e.logs = logs
	o := Options{Registries: regs, Logger: log, clock: e.clk, backoff: time.Millisecond}
	if eo.opts != nil {
		eo.opts(&o)
	}
	if e.m, err = New(o); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.m.Close() })
	return e
}

func (e *env) ref(t *testing.T, repo, tag string) refspec.Reference {
	t.Helper()
	r, err := refspec.Parse(e.reg.Ref(repo, tag))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func hostPlatform() ocispec.Platform {
	return ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
}

// bigData is 40000 random (so incompressible) but reproducible bytes.
func bigData() []byte {
	big := make([]byte, 40000)
	r := rand.NewChaCha8([32]byte{1})
	_, _ = r.Read(big)
	return big
}

// sampleFiles is a small tree with a file large enough for several chunks.
func sampleFiles(t *testing.T, tag string) []testutil.File {
	return []testutil.File{
		{Name: "etc/"},
		{Name: "etc/hostname", Data: "host-" + tag + "\n"},
		{Name: "bin/"},
		{Name: "bin/big", Data: string(bigData())},
		{Name: "bin/link", Link: "big"},
	}
}

// esgzImage pushes an image of n eStargz layers as repo:tag.
func (e *env) esgzImage(t *testing.T, repo, tag string, n int) (refspec.Reference, *testutil.Image) {
	t.Helper()
	var layers []testutil.Layer
	for i := range n {
		tarball := testutil.Tar(t, sampleFiles(t, tag+string(rune('a'+i)))...)
		layers = append(layers, testutil.ESGZLayer(t, tarball, testutil.ESGZOptions{ChunkSize: 8192}))
	}
	img := testutil.NewImage(t, hostPlatform(), layers...)
	e.reg.Push(t, repo, tag, img)
	return e.ref(t, repo, tag), img
}

// readFile reads the whole file name resolves to in the layer (symbolic
// links followed, as in a container).
func readFile(t *testing.T, l *Layer, name string) []byte {
	t.Helper()
	ent, ok := resolvePath(l.Index(), name)
	if !ok {
		t.Fatalf("no %s in the layer", name)
	}
	buf := make([]byte, ent.Size)
	n, err := l.ReadAt(t.Context(), ent, buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("read %s: %v", name, err)
	}
	return buf[:n]
}

func TestManagerGenAGenB(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref, img := e.esgzImage(t, "app", "v1", 2)
	for i, tl := range img.Layers {
		la, err := e.m.Layer(t.Context(), ref, tl.Desc.Digest)
		if err != nil {
			t.Fatalf("Layer(blob digest of layer %d) = %v", i, err)
		}
		lb, err := e.m.Layer(t.Context(), ref, tl.TOCDigest)
		if err != nil {
			t.Fatalf("Layer(TOC digest of layer %d) = %v", i, err)
		}
		if la != lb {
			t.Errorf("layer %d: Gen A and Gen B names give different layers", i)
		}
		want := "host-v1" + string(rune('a'+i)) + "\n"
		if got := string(readFile(t, la, "etc/hostname")); got != want {
			t.Errorf("layer %d etc/hostname = %q, want %q", i, got, want)
		}
		if got := readFile(t, lb, "bin/big"); !bytes.Equal(got, bigData()) {
			t.Errorf("layer %d bin/big: wrong content (%d bytes)", i, len(got))
		}
		usize := tl.Desc.Annotations[testutil.AnnotationUncompressedSize]
		checkInfo(t, la, tl.Desc.Digest, map[string]any{
			"compressed-diff-digest": tl.Desc.Digest.String(),
			"compressed-size":        float64(tl.Desc.Size),
			"diff-digest":            tl.DiffID.String(),
			"diff-size":              mustFloat(t, usize),
			"compression":            float64(2),
		})
		checkInfo(t, lb, tl.TOCDigest, map[string]any{
			"compressed-size": float64(tl.Desc.Size),
			"toc-digest":      tl.TOCDigest.String(),
			"diff-size":       mustFloat(t, usize),
			"compression":     float64(2),
			"flags":           map[string]any{"expected-layer-diffid": tl.DiffID.String()},
		})
	}
}

func mustFloat(t *testing.T, s string) float64 {
	t.Helper()
	var f float64
	if err := json.Unmarshal([]byte(s), &f); err != nil {
		t.Fatal(err)
	}
	return f
}

func checkInfo(t *testing.T, l *Layer, name digest.Digest, want map[string]any) {
	t.Helper()
	raw, err := l.Info(name)
	if err != nil {
		t.Fatalf("Info(%s) = %v", name, err)
	}
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatal(err)
	}
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if !bytes.Equal(gj, wj) {
		t.Errorf("Info(%s) = %s, want %s", name, gj, wj)
	}
}

func TestManagerSharesResolution(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref, img := e.esgzImage(t, "app", "v1", 3)
	var wg sync.WaitGroup
	for _, tl := range img.Layers {
		for _, d := range []digest.Digest{tl.Desc.Digest, tl.TOCDigest} {
			wg.Go(func() {
				if _, err := e.m.Layer(t.Context(), ref, d); err != nil {
					t.Errorf("Layer(%s) = %v", d, err)
				}
			})
		}
	}
	wg.Wait()
	// Besides the image's manifest, resolution looks once for an external-TOC image (v1-esgztoc).
	imageManifests := func(r testutil.Request) bool { return r.IsManifest() && !strings.HasSuffix(r.Path, "-esgztoc") }
	if n := e.reg.Count(imageManifests); n != 1 {
		t.Errorf("%d manifest requests for %d layers, want 1", n, len(img.Layers))
	}
	configs := e.reg.Count(func(r testutil.Request) bool { return r.IsBlob() && r.Range == "" })
	if configs != 1 {
		t.Errorf("%d whole-blob requests (config), want 1", configs)
	}
	if n := len(e.logs.Find(slog.LevelInfo, "layer resolved")); n != len(img.Layers) {
		t.Errorf("%d layers resolved, want %d (one open per layer for both names)", n, len(img.Layers))
	}
}

func TestManagerConcurrentReadsOneRequest(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref, img := e.esgzImage(t, "app", "v1", 1)
	l, err := e.m.Layer(t.Context(), ref, img.Layers[0].Desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	ent, _ := l.Index().Lookup("bin/big")
	e.reg.Reset()
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			buf := make([]byte, 100)
			if _, err := l.ReadAt(t.Context(), ent, buf, 10); err != nil {
				t.Errorf("ReadAt = %v", err)
			}
		})
	}
	wg.Wait()
	if n := e.reg.Count(testutil.Request.IsRange); n != 1 {
		t.Errorf("10 concurrent reads of one chunk made %d range requests, want 1", n)
	}
}

func TestManagerNotLazy(t *testing.T) {
	e := newEnv(t, envOptions{})
	files := sampleFiles(t, "gz")
	plain := testutil.GzipLayer(t, testutil.Tar(t, files...))
	// A layer that claims to be eStargz but is plain gzip: OpenLayer refuses it.
	fake := testutil.GzipLayer(t, testutil.Tar(t, files[:2]...))
	fake.Desc.Annotations = map[string]string{testutil.AnnotationTOCDigest: digest.FromString("toc").String()}
	img := testutil.NewImage(t, hostPlatform(), plain, fake)
	e.reg.Push(t, "plain", "v1", img)
	ref := e.ref(t, "plain", "v1")

	for _, tl := range []testutil.Layer{plain, fake} {
		for range 3 {
			_, err := e.m.Layer(t.Context(), ref, tl.Desc.Digest)
			if !errors.Is(err, ErrNotLazy) {
				t.Fatalf("Layer(%s) = %v, want ErrNotLazy", tl.Desc.Digest, err)
			}
		}
	}
	warns := e.logs.Find(slog.LevelWarn, "layer not served lazily")
	if len(warns) != 2 {
		t.Fatalf("%d Warn lines, want one per layer: %v", len(warns), warns)
	}
	for i, tl := range []testutil.Layer{plain, fake} {
		w := warns[i]
		if w.Attrs["ref"] != ref.String() || w.Attrs["digest"] != tl.Desc.Digest.String() || w.Attrs["reason"] != "not-lazy" || w.Attrs["err"] == "" {
			t.Errorf("Warn line %d = %v, want ref, digest %s, reason not-lazy and err", i, w.Attrs, tl.Desc.Digest)
		}
	}
	if !strings.Contains(warns[0].Attrs["err"], "annotation") {
		t.Errorf("Warn for a layer without TOC annotation does not say so: %s", warns[0].Attrs["err"])
	}
	if n := e.reg.Count(testutil.Request.IsRange); n > 2 {
		t.Errorf("%d range requests, want at most 2 (footer and TOC of the fake layer, once)", n)
	}
	for _, r := range e.reg.Requests() {
		if r.IsRange() && !strings.Contains(r.Path, fake.Desc.Digest.Encoded()) {
			t.Errorf("range request %s for a layer without a TOC annotation", r.Path)
		}
	}
	// The Gen B name of the fake layer shares its verdict.
	before := e.reg.Count(testutil.Request.IsRange)
	if _, err := e.m.Layer(t.Context(), ref, digest.FromString("toc")); !errors.Is(err, ErrNotLazy) {
		t.Errorf("Layer(TOC name of the fake layer) = %v, want ErrNotLazy", err)
	}
	if e.reg.Count(testutil.Request.IsRange) != before {
		t.Errorf("the TOC name re-checked the layer")
	}

	// A later pull (lookups more than warnQuiet later) is told why again,
	// from the cached verdict.
	e.clk.Advance(2 * warnQuiet)
	if _, err := e.m.Layer(t.Context(), ref, fake.Desc.Digest); !errors.Is(err, ErrNotLazy) {
		t.Errorf("Layer = %v, want ErrNotLazy", err)
	}
	if n := len(e.logs.Find(slog.LevelWarn, "layer not served lazily")); n != 4 {
		t.Errorf("%d Warn lines, want 4 (one more for a later burst)", n)
	}
	if e.reg.Count(testutil.Request.IsRange) != before {
		t.Errorf("the verdict was re-checked within NotLazyTTL")
	}

	// The verdict expires; asking again then re-checks.
	e.clk.Advance(2 * defaultNotLazyTTL)
	if _, err := e.m.Layer(t.Context(), ref, fake.Desc.Digest); !errors.Is(err, ErrNotLazy) {
		t.Errorf("Layer after the TTL = %v, want ErrNotLazy", err)
	}
	if e.reg.Count(testutil.Request.IsRange) == before {
		t.Errorf("verdict not re-checked after NotLazyTTL")
	}
}

func TestManagerNotFound(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref, _ := e.esgzImage(t, "app", "v1", 1)
	_, err := e.m.Layer(t.Context(), ref, digest.FromString("nope"))
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Layer(unknown digest) = %v, want ErrNotFound", err)
	}
	if w := e.logs.Find(slog.LevelWarn, "layer not served lazily"); len(w) != 0 {
		t.Errorf("Warn for an unknown digest: %v", w)
	}
}

func TestManagerResolveErrorNotCached(t *testing.T) {
	e := newEnv(t, envOptions{opts: func(o *Options) { o.Retries = -1 }}) // the 500s are for good
	ref, img := e.esgzImage(t, "app", "v1", 1)
	e.reg.Inject(testutil.Fault{Match: isManifest, Status: 500})
	_, err := e.m.Layer(t.Context(), ref, img.Layers[0].Desc.Digest)
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrNotLazy) {
		t.Fatalf("Layer with a failing registry = %v, want a fetch error", err)
	}
	if w := e.logs.Find(slog.LevelWarn, "layer not served lazily"); len(w) != 1 || !strings.Contains(w[0].Attrs["err"], "500") || w[0].Attrs["reason"] != "registry" {
		t.Errorf("Warn lines = %v, want one saying why, reason registry", w)
	}
	e.reg.ClearFaults()
	if _, err := e.m.Layer(t.Context(), ref, img.Layers[0].Desc.Digest); err != nil {
		t.Errorf("Layer after the registry recovered = %v", err)
	}
}

func isManifest(r *http.Request) bool {
	return testutil.Request{Method: r.Method, Path: r.URL.Path}.IsManifest()
}

func isRange(r *http.Request) bool { return r.Header.Get("Range") != "" }

func TestManagerRetriesTransientErrors(t *testing.T) {
	tests := []struct {
		name  string
		fault testutil.Fault
	}{
		{"503", testutil.Fault{Match: isRange, Status: 503, Times: 2}},
		{"truncated", testutil.Fault{Match: isRange, Truncate: 10, Times: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			ref, img := e.esgzImage(t, "app", "v1", 1)
			e.reg.Inject(tt.fault)
			l, err := e.m.Layer(t.Context(), ref, img.Layers[0].Desc.Digest)
			if err != nil {
				t.Fatalf("Layer = %v", err)
			}
			if got := string(readFile(t, l, "etc/hostname")); got != "host-v1a\n" {
				t.Errorf("etc/hostname = %q", got)
			}
			bad := e.reg.Count(func(r testutil.Request) bool { return r.IsRange() && r.Status != 206 || r.Bytes == 10 })
			if bad != 2 {
				t.Errorf("%d failed range requests, want 2 (then retried)", bad)
			}
		})
	}
}

func TestManagerRequestTimeout(t *testing.T) {
	e := newEnv(t, envOptions{opts: func(o *Options) { o.FetchTimeout = 50 * time.Millisecond }})
	ref, img := e.esgzImage(t, "app", "v1", 1)
	stall := make(chan struct{})
	defer close(stall)
	e.reg.Inject(testutil.Fault{Match: isRange, Stall: stall, Times: 1})
	l, err := e.m.Layer(t.Context(), ref, img.Layers[0].Desc.Digest)
	if err != nil {
		t.Fatalf("Layer after a stalled request = %v", err)
	}
	if got := string(readFile(t, l, "etc/hostname")); got != "host-v1a\n" {
		t.Errorf("etc/hostname = %q", got)
	}
}

func TestManagerRangeErrors(t *testing.T) {
	t.Run("416", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		ref, img := e.esgzImage(t, "app", "v1", 1)
		e.reg.Inject(testutil.Fault{Match: isRange, Status: 416})
		_, err := e.m.Layer(t.Context(), ref, img.Layers[0].Desc.Digest)
		if err == nil || !strings.Contains(err.Error(), "416") {
			t.Fatalf("Layer = %v, want a 416 error", err)
		}
		if n := e.reg.Count(testutil.Request.IsRange); n != 1 {
			t.Errorf("%d range requests, want 1 (416 is not retried)", n)
		}
	})
	t.Run("retries bounded", func(t *testing.T) {
		e := newEnv(t, envOptions{opts: func(o *Options) { o.Retries = 2 }})
		ref, img := e.esgzImage(t, "app", "v1", 1)
		e.reg.Inject(testutil.Fault{Match: isRange, Status: 502})
		if _, err := e.m.Layer(t.Context(), ref, img.Layers[0].Desc.Digest); err == nil {
			t.Fatal("Layer succeeded against a failing registry")
		}
		if n := e.reg.Count(testutil.Request.IsRange); n != 3 {
			t.Errorf("%d range requests, want 3 (1 + 2 retries)", n)
		}
	})
}

func TestManagerIgnoredRange(t *testing.T) {
	e := cachedEnv(t, t.TempDir(), nil) // the blob file reads through the cache
	ref, img := e.esgzImage(t, "app", "v1", 1)
	e.reg.Inject(testutil.Fault{IgnoreRange: true})
	l, err := e.m.Layer(t.Context(), ref, img.Layers[0].Desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(readFile(t, l, "etc/hostname")); got != "host-v1a\n" {
		t.Errorf("etc/hostname = %q", got)
	}
	buf := make([]byte, 10)
	if _, err := l.ReadBlobAt(t.Context(), buf, 5); err != nil || !bytes.Equal(buf, img.Layers[0].Blob[5:15]) {
		t.Errorf("ReadBlobAt = %q, %v; want %q", buf, err, img.Layers[0].Blob[5:15])
	}
	if n := len(e.logs.Find(slog.LevelWarn, "registry ignores range requests")); n != 1 {
		t.Errorf("%d Warn lines about ignored ranges, want 1", n)
	}
}

func TestManagerCorruptChunk(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref, img := e.esgzImage(t, "app", "v1", 1)
	l, err := e.m.Layer(t.Context(), ref, img.Layers[0].Desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	ent, _ := l.Index().Lookup("bin/big") // random bytes: stored deflate blocks
	c, _ := ent.ChunkAt(8192)
	e.reg.Inject(testutil.Fault{Match: isRange, Flip: int(c.CompressedEnd-c.CompressedOffset) / 2})
	buf := make([]byte, 100)
	n, err := l.ReadAt(t.Context(), ent, buf, 8192)
	if !errors.Is(err, ErrVerify) {
		t.Errorf("ReadAt of a corrupted chunk = %d, %v; want ErrVerify", n, err)
	}
	if n != 0 {
		t.Errorf("ReadAt of a corrupted chunk returned %d bytes", n)
	}
	e.reg.ClearFaults()
	if n, err := l.ReadAt(t.Context(), ent, buf, 8192); err != nil || !bytes.Equal(buf[:n], bigData()[8192:8292]) {
		t.Errorf("ReadAt after the fault = %d, %v; want the file's bytes", n, err)
	}
}

func TestManagerIndex(t *testing.T) {
	e := newEnv(t, envOptions{})
	other := ocispec.Platform{OS: "linux", Architecture: "s390x"}
	if runtime.GOARCH == "s390x" {
		other.Architecture = "amd64"
	}
	host := testutil.NewImage(t, hostPlatform(), testutil.ESGZLayer(t, testutil.Tar(t, sampleFiles(t, "host")...), testutil.ESGZOptions{}))
	foreign := testutil.NewImage(t, other, testutil.ESGZLayer(t, testutil.Tar(t, sampleFiles(t, "foreign")...), testutil.ESGZOptions{}))
	e.reg.PushIndex(t, "multi", "v1", foreign, host)
	ref := e.ref(t, "multi", "v1")

	l, err := e.m.Layer(t.Context(), ref, host.Layers[0].TOCDigest)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(readFile(t, l, "etc/hostname")); got != "host-host\n" {
		t.Errorf("host layer etc/hostname = %q", got)
	}
	for _, r := range e.reg.Requests() {
		if r.IsManifest() && strings.HasSuffix(r.Path, foreign.Desc.Digest.String()) {
			t.Errorf("manifest of the other platform fetched to find a host layer")
		}
	}
	// A layer of the other platform (podman pull --arch) is found by search.
	l, err = e.m.Layer(t.Context(), ref, foreign.Layers[0].Desc.Digest)
	if err != nil {
		t.Fatalf("Layer(other platform's layer) = %v", err)
	}
	if got := string(readFile(t, l, "etc/hostname")); got != "host-foreign\n" {
		t.Errorf("foreign layer etc/hostname = %q", got)
	}
	before := e.reg.Count(testutil.Request.IsManifest)
	if _, err := e.m.Layer(t.Context(), ref, digest.FromString("nope")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Layer(unknown) = %v, want ErrNotFound", err)
	}
	if n := e.reg.Count(testutil.Request.IsManifest); n != before {
		t.Errorf("unknown digest re-searched the index: %d manifest requests", n-before)
	}
}

func TestManagerAuth(t *testing.T) {
	t.Run("credentials", func(t *testing.T) {
		e := newEnv(t, envOptions{user: "alice", pass: "s3cret"})
		ref, img := e.esgzImage(t, "private", "v1", 1)
		e.reg.RequireBasicAuth("alice", "s3cret")
		l, err := e.m.Layer(t.Context(), ref, img.Layers[0].TOCDigest)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(readFile(t, l, "etc/hostname")); got != "host-v1a\n" {
			t.Errorf("etc/hostname = %q", got)
		}
	})
	t.Run("none", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		ref, img := e.esgzImage(t, "private", "v1", 1)
		e.reg.RequireBasicAuth("alice", "s3cret")
		_, err := e.m.Layer(t.Context(), ref, img.Layers[0].TOCDigest)
		if err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Layer without credentials = %v, want an error", err)
		}
		if w := e.logs.Find(slog.LevelWarn, "layer not served lazily"); len(w) != 1 || !strings.Contains(w[0].Attrs["err"], "authentication") || w[0].Attrs["reason"] != "unauthorized" {
			t.Errorf("Warn lines = %v, want one saying authentication failed, reason unauthorized", w)
		}
	})
}

func TestManagerClose(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref, img := e.esgzImage(t, "app", "v1", 1)
	if _, err := e.m.Layer(t.Context(), ref, img.Layers[0].Desc.Digest); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
	if _, err := e.m.Layer(t.Context(), ref, img.Layers[0].Desc.Digest); err == nil {
		t.Error("Layer after Close succeeded")
	}
	e.clk.Advance(10 * defaultIdleTimeout) // no timer may fire into a closed Manager
}

func TestManagerCallerCancel(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref, img := e.esgzImage(t, "app", "v1", 1)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := e.m.Layer(ctx, ref, img.Layers[0].Desc.Digest); !errors.Is(err, context.Canceled) {
		t.Fatalf("Layer with a cancelled context = %v", err)
	}
	// The shared resolution went on (or is retried) for the next caller.
	if _, err := e.m.Layer(t.Context(), ref, img.Layers[0].Desc.Digest); err != nil {
		t.Fatal(err)
	}
}

func TestManagerCloseDuringResolve(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref, img := e.esgzImage(t, "app", "v1", 1)
	stall := make(chan struct{})
	defer close(stall)
	e.reg.Inject(testutil.Fault{Match: isManifest, Stall: stall})
	done := make(chan error, 1)
	go func() {
		_, err := e.m.Layer(t.Context(), ref, img.Layers[0].Desc.Digest)
		done <- err
	}()
	for e.reg.Count(testutil.Request.IsManifest) == 0 {
		runtime.Gosched() // wait until the resolution is stuck in the registry
	}
	if err := e.m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Error("Layer succeeded although the manager closed while resolving")
	}
}
