// SPDX-License-Identifier: Apache-2.0

package store

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/refspec"
)

func TestManagerUseRelease(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref, img := e.esgzImage(t, "app", "v1", 1)
	tl := img.Layers[0]
	l, err := e.m.Layer(t.Context(), ref, tl.Desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		op   func(refspec.Reference, digest.Digest) error
		name digest.Digest
		msg  string
		refs string
	}{
		{e.m.Use, tl.Desc.Digest, "use", "1"},
		{e.m.Use, tl.TOCDigest, "use", "1"},
		{e.m.Use, tl.Desc.Digest, "use", "2"},
		{e.m.Release, tl.Desc.Digest, "release", "1"},
		{e.m.Release, tl.Desc.Digest, "release", "0"},
	}
	for i, s := range steps {
		if err := s.op(ref, s.name); err != nil {
			t.Fatalf("step %d: %s(%s) = %v", i, s.msg, s.name, err)
		}
		lines := e.logs.Find(slog.LevelInfo, s.msg)
		last := lines[len(lines)-1].Attrs
		if last["refs"] != s.refs || last["digest"] != s.name.String() || last["ref"] != ref.String() {
			t.Errorf("step %d: log %s %v, want refs=%s", i, s.msg, last, s.refs)
		}
	}
	if n := len(e.logs.Find(slog.LevelInfo, "layer freed")); n != 0 {
		t.Fatalf("layer freed while its TOC name is in use")
	}
	if l2, _ := e.m.Layer(t.Context(), ref, tl.TOCDigest); l2 != l {
		t.Fatalf("used layer was replaced")
	}
	// Idle time does not free a used layer.
	e.clk.Advance(10 * defaultIdleTimeout)
	if n := len(e.logs.Find(slog.LevelInfo, "layer freed")); n != 0 {
		t.Fatalf("used layer freed by the idle timer")
	}
	if err := e.m.Release(ref, tl.TOCDigest); err != nil {
		t.Fatal(err)
	}
	if n := len(e.logs.Find(slog.LevelInfo, "layer freed")); n != 1 {
		t.Fatalf("%d layer freed lines after the last release, want 1", n)
	}
	if err := e.m.Release(ref, tl.TOCDigest); !errors.Is(err, ErrNotFound) {
		t.Errorf("Release of a freed layer = %v, want ErrNotFound", err)
	}
	if len(e.logs.Find(slog.LevelDebug, "release of a layer not in use")) != 1 {
		t.Errorf("unknown release not logged at Debug")
	}
	l3, err := e.m.Layer(t.Context(), ref, tl.Desc.Digest)
	if err != nil || l3 == l {
		t.Errorf("Layer after free = %p, %v; want a new layer", l3, err)
	}
}

func TestManagerUseBeforeOpen(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref, img := e.esgzImage(t, "app", "v1", 1)
	tl := img.Layers[0]
	if err := e.m.Use(ref, tl.TOCDigest); err != nil {
		t.Fatal(err)
	}
	l, err := e.m.Layer(t.Context(), ref, tl.Desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(10 * defaultIdleTimeout)
	if l2, _ := e.m.Layer(t.Context(), ref, tl.Desc.Digest); l2 != l {
		t.Fatalf("layer used before it opened was freed when idle")
	}
	if err := e.m.Release(ref, tl.TOCDigest); err != nil {
		t.Fatal(err)
	}
	if n := len(e.logs.Find(slog.LevelInfo, "layer freed")); n != 1 {
		t.Errorf("%d layer freed lines, want 1", n)
	}
}

func TestManagerIdleFree(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref, img := e.esgzImage(t, "app", "v1", 1)
	d := img.Layers[0].Desc.Digest
	l, err := e.m.Layer(t.Context(), ref, d)
	if err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(defaultIdleTimeout - time.Second)
	if l2, _ := e.m.Layer(t.Context(), ref, d); l2 != l {
		t.Fatal("layer freed before IdleTimeout")
	}
	e.clk.Advance(defaultIdleTimeout - time.Second) // a lookup restarts the idle time
	if n := len(e.logs.Find(slog.LevelInfo, "layer freed")); n != 0 {
		t.Fatal("layer freed less than IdleTimeout after its last lookup")
	}
	e.clk.Advance(2 * time.Second)
	if n := len(e.logs.Find(slog.LevelInfo, "layer freed")); n != 1 {
		t.Fatalf("%d layer freed lines after IdleTimeout, want 1", n)
	}
	manifests := e.reg.Count(testutil.Request.IsManifest)
	if _, err := e.m.Layer(t.Context(), ref, d); err != nil {
		t.Fatal(err)
	}
	if n := e.reg.Count(testutil.Request.IsManifest); n != manifests {
		t.Errorf("image re-resolved right after its layer was freed")
	}
	// The layer goes when idle, its image IdleTimeout after that.
	e.clk.Advance(defaultIdleTimeout)
	e.clk.Advance(defaultIdleTimeout)
	e.m.mu.Lock()
	nl, ni := len(e.m.layers), len(e.m.images)
	e.m.mu.Unlock()
	if nl != 0 || ni != 0 {
		t.Errorf("after idling: %d layer states, %d images, want none", nl, ni)
	}
}

// After a restart storage's counts are gone, but containers mounted from
// the store read its files: such a layer must not be freed when idle.
func TestManagerReadLayerKept(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref, img := e.esgzImage(t, "app", "v1", 1)
	d := img.Layers[0].Desc.Digest
	l, err := e.m.Layer(t.Context(), ref, d)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(readFile(t, l, "etc/hostname")); got != "host-v1a\n" {
		t.Fatalf("etc/hostname = %q", got)
	}
	e.clk.Advance(3 * defaultIdleTimeout)
	if n := len(e.logs.Find(slog.LevelInfo, "layer freed")); n != 0 {
		t.Fatal("a layer whose files were read was freed when idle")
	}
	if n := len(e.logs.Find(slog.LevelInfo, "layer read without a use: kept")); n != 1 {
		t.Errorf("%d 'kept' lines, want 1", n)
	}
	if l2, _ := e.m.Layer(t.Context(), ref, d); l2 != l {
		t.Error("kept layer replaced")
	}
}

// Uses of names that never open are forgotten after IdleTimeout, and at
// most maxPending are kept at once: a flood of made-up names cannot grow
// the store's memory.
func TestManagerPendingBounded(t *testing.T) {
	e := newEnv(t, envOptions{})
	ref, img := e.esgzImage(t, "app", "v1", 1)
	made := func(i int) digest.Digest { return digest.FromString(fmt.Sprintf("no such layer %d", i)) }
	for i := range maxPending + 100 {
		if err := e.m.Use(ref, made(i)); err != nil {
			t.Fatal(err)
		}
	}
	countPending := func() (n int) {
		e.m.mu.Lock()
		defer e.m.mu.Unlock()
		for _, st := range e.m.layers {
			if st.kind == statePending {
				n++
			}
		}
		if n != e.m.pending {
			t.Errorf("pending counter %d, states %d", e.m.pending, n)
		}
		return n
	}
	if n := countPending(); n != maxPending {
		t.Fatalf("%d pending states after %d uses of unknown names, want %d", n, maxPending+100, maxPending)
	}
	// The newest are kept: a use of a real layer just before it opens
	// still joins it.
	tl := img.Layers[0]
	if err := e.m.Use(ref, tl.TOCDigest); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Layer(t.Context(), ref, tl.Desc.Digest); err != nil {
		t.Fatal(err)
	}
	if n := countPending(); n != maxPending-1 {
		t.Errorf("%d pending states after the real layer opened, want %d", n, maxPending-1)
	}
	e.clk.Advance(defaultIdleTimeout + time.Second)
	if n := countPending(); n != 0 {
		t.Errorf("%d pending states after IdleTimeout, want 0", n)
	}
	if err := e.m.Release(ref, made(maxPending+99)); !errors.Is(err, ErrNotFound) {
		t.Errorf("Release of a forgotten name = %v, want ErrNotFound", err)
	}
	// The used layer stays.
	if err := e.m.Release(ref, tl.TOCDigest); err != nil {
		t.Errorf("Release of the used layer = %v", err)
	}
}
