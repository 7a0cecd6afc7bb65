// SPDX-License-Identifier: Apache-2.0

package store

import (
	"net/http"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/internal/testutil"
)

// TestEarlyTails: every eStargz layer's tail is requested while the
// image config is still on its way, and each layer's open then uses it:
// no range request more than one per layer.
func TestEarlyTails(t *testing.T) {
	e := newEnv(t, envOptions{opts: quiet})
	ref, img := e.esgzImage(t, "app", "v1", 3)
	cfg := digest.FromBytes(img.Config).String()
	stall := make(chan struct{})
	e.reg.Inject(testutil.Fault{Match: func(r *http.Request) bool { return strings.HasSuffix(r.URL.Path, cfg) }, Stall: stall})
	done := make(chan error, 1)
	go func() {
		_, err := e.m.Layer(t.Context(), ref, img.Layers[0].Desc.Digest)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for e.reg.Count(testutil.Request.IsRange) < 3 {
		if time.Now().After(deadline) {
			close(stall)
			t.Fatalf("%d range requests while the config was held, want the 3 layers' tails", e.reg.Count(testutil.Request.IsRange))
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stall)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, tl := range img.Layers[1:] {
		if _, err := e.m.Layer(t.Context(), ref, tl.TOCDigest); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.reg.Count(testutil.Request.IsRange); n != 3 {
		t.Errorf("%d range requests for 3 layer opens, want 3 (the tails fetched ahead)", n)
	}
}
