// SPDX-License-Identifier: Apache-2.0

package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stargz-store/stargz-store/internal/faultproxy"
	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
)

// Registry faults, end to end in-process: a Manager reads a layer through
// a fault-injecting proxy in front of the in-process registry. Every read
// gets the right bytes or an error within ReadTimeout; nothing leaks.

const (
	faultFetchTimeout = 200 * time.Millisecond
	faultReadTimeout  = 2 * time.Second
	// faultSlack is what a loaded machine may add to a bound.
	faultSlack = 2 * time.Second
)

type faultEnv struct {
	reg   *testutil.Registry
	px    *faultproxy.Proxy
	m     *Manager
	logs  *testutil.Logs
	ref   refspec.Reference
	files []testutil.File
	blob  []byte // the layer's blob
	l     *Layer
}

// newFaultEnv opens the layer of app:v1 through the proxy, with the
// proxy passing everything, and no prefetch, background fetch,
// speculation or read-ahead: every file read is its own range request.
func newFaultEnv(t *testing.T) *faultEnv {
	t.Helper()
	testutil.CheckLeaks(t)
	e := &faultEnv{reg: testutil.NewRegistry(t)}
	e.reg.SetMultiRange(testutil.MultiRangeServe)
	px, err := faultproxy.Start(faultproxy.Options{Addr: "127.0.0.1:0", Backend: e.reg.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	e.px = px
	e.files = append(sampleFiles(t, "f"), testutil.File{Name: "etc/motd", Data: strings.Repeat("fault tolerance\n", 4000)})
	layer := testutil.ESGZLayer(t, testutil.Tar(t, e.files...), testutil.ESGZOptions{ChunkSize: 8192})
	img := testutil.NewImage(t, hostPlatform(), layer)
	e.reg.Push(t, "app", "v1", img)
	e.reg.Push(t, "app", "v2", img) // for tests that resolve through faults
	e.blob = layer.Blob
	conf := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "[[registry]]\nlocation = %q\ninsecure = true\n", px.Addr()), 0o600); err != nil {
		t.Fatal(err)
	}
	regs, err := registryauth.New(registryauth.Options{AuthFile: e.reg.AuthFile(t, "", ""), RegistriesConf: conf,
		RegistriesConfDir: t.TempDir(), CertDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { regs.Close() })
	log, logs := testutil.NewLogger()
	e.logs = logs
	e.m, err = New(Options{Registries: regs, Logger: log, FetchTimeout: faultFetchTimeout, ReadTimeout: faultReadTimeout,
		backoff: 5 * time.Millisecond, maxBackoff: 50 * time.Millisecond,
		NoPrefetch: true, NoBackgroundFetch: true, NoSpeculate: true, ReadAhead: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.m.Close() })
	if e.ref, err = refspec.Parse(px.Addr() + "/app:v1"); err != nil {
		t.Fatal(err)
	}
	if e.l, err = e.m.Layer(t.Context(), e.ref, layer.Desc.Digest); err != nil {
		t.Fatal(err)
	}
	return e
}

// read reads file name whole, and how long it took.
func (e *faultEnv) read(ctx context.Context, name string) ([]byte, time.Duration, error) {
	ent, ok := resolvePath(e.l.Index(), name)
	if !ok {
		return nil, 0, fmt.Errorf("no %s in the layer", name)
	}
	start := time.Now()
	buf := make([]byte, ent.Size)
	n, err := e.l.ReadAt(ctx, ent, buf, 0)
	if errors.Is(err, io.EOF) && int64(n) == ent.Size {
		err = nil
	}
	return buf[:n], time.Since(start), err
}

// readAllRight reads every regular file and checks its bytes and that
// each read ended within ReadTimeout.
func (e *faultEnv) readAllRight(t *testing.T) {
	t.Helper()
	for _, f := range e.files {
		if f.Data == "" {
			continue
		}
		got, took, err := e.read(t.Context(), f.Name)
		if err != nil || !bytes.Equal(got, []byte(f.Data)) {
			t.Fatalf("read %s = %d bytes, %v; want its %d bytes", f.Name, len(got), err, len(f.Data))
		}
		if took > faultReadTimeout+faultSlack {
			t.Errorf("read %s took %s, want at most %s", f.Name, took, faultReadTimeout)
		}
	}
}

func TestFaultsRecovered(t *testing.T) {
	tests := []faultproxy.Fault{
		{Mode: faultproxy.ModeStatus, Status: 503, Times: 3},
		{Mode: faultproxy.ModeStatus, Status: 429, Times: 1},
		{Mode: faultproxy.ModeReset, Times: 3},
		{Mode: faultproxy.ModeReset, After: 1000, Times: 2},
		{Mode: faultproxy.ModeTruncate, After: 1000, Times: 3},
		{Mode: faultproxy.ModeStall, Times: 1},
		{Mode: faultproxy.ModeStall, After: 1000, Times: 2},
		{Mode: faultproxy.ModeIgnoreRange, Times: 2},
		{Mode: faultproxy.ModeStatus, Every: 2}, // every other request fails, for good
	}
	for _, f := range tests {
		t.Run(fmt.Sprintf("%s status=%d after=%d times=%d every=%d", f.Mode, f.Status, f.After, f.Times, f.Every), func(t *testing.T) {
			e := newFaultEnv(t)
			e.px.Set(f)
			e.readAllRight(t)
			if s := e.px.Stats(); s.Injected == 0 {
				t.Errorf("no fault injected: %+v", s)
			}
		})
	}
}

func TestFaultsPermanent(t *testing.T) {
	tests := []faultproxy.Fault{
		{Mode: faultproxy.ModeStatus, Status: 503},
		{Mode: faultproxy.ModeReset},
		{Mode: faultproxy.ModeTruncate, After: 100},
		{Mode: faultproxy.ModeStall},
		{Mode: faultproxy.ModeStall, After: 100},
	}
	for _, f := range tests {
		t.Run(fmt.Sprintf("%s after=%d", f.Mode, f.After), func(t *testing.T) {
			e := newFaultEnv(t)
			e.px.Set(f)
			e.failsWithinBound(t)
			e.px.Clear()
			e.readAllRight(t)
		})
	}
}

// failsWithinBound checks that reading a file and the raw blob fail
// within ReadTimeout.
func (e *faultEnv) failsWithinBound(t *testing.T) {
	t.Helper()
	_, took, err := e.read(t.Context(), "etc/motd")
	if err == nil {
		t.Fatal("read succeeded through a permanent fault")
	}
	if took > faultReadTimeout+faultSlack {
		t.Errorf("read failed after %s, want within %s: %v", took, faultReadTimeout, err)
	}
	start := time.Now()
	if _, err := e.l.ReadBlobAt(t.Context(), make([]byte, 1000), 0); err == nil {
		t.Error("ReadBlobAt succeeded through a permanent fault")
	}
	if took := time.Since(start); took > faultReadTimeout+faultSlack {
		t.Errorf("ReadBlobAt failed after %s, want within %s", took, faultReadTimeout)
	}
}

// TestFaultsCutThenBack: reads that start during a cut get the right
// bytes once the registry is back.
func TestFaultsCutThenBack(t *testing.T) {
	for _, c := range []faultproxy.Cut{faultproxy.CutRefuse, faultproxy.CutBlackhole} {
		t.Run(string(c), func(t *testing.T) {
			e := newFaultEnv(t)
			conns := e.px.Stats().Conns
			if err := e.px.Cut(c, 0); err != nil {
				t.Fatal(err)
			}
			type result struct {
				data []byte
				err  error
			}
			done := make(chan result, 1)
			go func() {
				data, _, err := e.read(t.Context(), "etc/motd")
				done <- result{data, err}
			}()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			// Wait until the read has failed at least once and retries.
			var werr error
			if c == faultproxy.CutRefuse {
				werr = e.logs.Wait(ctx, func(rs []testutil.LogRecord) bool { return countMsg(rs, "range request failed") >= 2 })
			} else {
				werr = e.px.Await(ctx, func(s faultproxy.Stats) bool { return s.Conns > conns })
			}
			if werr != nil {
				t.Fatalf("no retry seen: %v", werr)
			}
			if err := e.px.Restore(); err != nil {
				t.Fatal(err)
			}
			r := <-done
			if r.err != nil || string(r.data) != strings.Repeat("fault tolerance\n", 4000) {
				t.Fatalf("read across the cut = %d bytes, %v", len(r.data), r.err)
			}
		})
	}
}

func countMsg(rs []testutil.LogRecord, msg string) int {
	n := 0
	for _, r := range rs {
		if r.Msg == msg {
			n++
		}
	}
	return n
}

// TestFaultsCutForGood: during a cut that does not end, reads fail within
// ReadTimeout; once the registry is back they succeed again.
func TestFaultsCutForGood(t *testing.T) {
	for _, c := range []faultproxy.Cut{faultproxy.CutRefuse, faultproxy.CutBlackhole} {
		t.Run(string(c), func(t *testing.T) {
			e := newFaultEnv(t)
			if err := e.px.Cut(c, 0); err != nil {
				t.Fatal(err)
			}
			e.failsWithinBound(t)
			if err := e.px.Restore(); err != nil {
				t.Fatal(err)
			}
			e.readAllRight(t)
		})
	}
}

// TestFaultsResolve: a stalled or failing manifest GET is caught within
// FetchTimeout and retried within the resolve timeout.
func TestFaultsResolve(t *testing.T) {
	for _, f := range []faultproxy.Fault{
		{Mode: faultproxy.ModeStall, Match: faultproxy.MatchManifest, Times: 1},
		{Mode: faultproxy.ModeStall, After: 10, Match: faultproxy.MatchManifest, Times: 1},
		{Mode: faultproxy.ModeStatus, Match: faultproxy.MatchManifest, Times: 2},
		{Mode: faultproxy.ModeReset, Match: faultproxy.MatchAll, Every: 2},
	} {
		t.Run(fmt.Sprintf("%s after=%d times=%d every=%d", f.Mode, f.After, f.Times, f.Every), func(t *testing.T) {
			e := newFaultEnv(t)
			e.px.Set(f)
			ref, err := refspec.Parse(e.px.Addr() + "/app:v2")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.m.Layer(t.Context(), ref, e.l.Desc().Digest); err != nil {
				t.Fatalf("Layer through a %s fault = %v", f.Mode, err)
			}
			if s := e.px.Stats(); s.Injected == 0 {
				t.Errorf("no fault injected: %+v", s)
			}
		})
	}
}
