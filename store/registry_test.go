// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
	"github.com/stargz-store/stargz-store/store/remote"
)

// TestLayerReadTimeoutEndsItsFetch: a reader waits at most ReadTimeout,
// and the fetch it started (detached, other readers may join it) ends
// then too, without the layer being closed.
func TestLayerReadTimeoutEndsItsFetch(t *testing.T) {
	files := []testutil.File{{Name: "a", Data: strings.Repeat("stalled body ", 1000)}}
	layer := testutil.ESGZLayer(t, testutil.Tar(t, files...), testutil.ESGZOptions{ChunkSize: 4096})
	// The default policy: FetchTimeout 10 s, ReadTimeout 30 s, backoff
	// 100 ms doubling to 2 s.
	o := remote.Options{FetchTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, Backoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second}
	ref, err := refspec.Parse("fake/x:v1")
	if err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		tr := testutil.NewRangeTransport(layer.Blob, "ok")
		eps := []registryauth.Endpoint{{Ref: ref.Named(), Host: "fake", Transport: tr}}
		desc := LayerDesc{Digest: layer.Desc.Digest, Size: layer.Desc.Size, TOCDigest: layer.TOCDigest}
		blob := registryBlob{remote.NewBlob(ref, desc.Digest, desc.Size, eps, nil, o)}
		l, err := OpenLayer(t.Context(), blob, desc, LayerOptions{ReadTimeout: o.ReadTimeout})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		tr.SetModes("stall")
		ent, _ := l.Index().Lookup("a")
		start := time.Now()
		_, err = l.ReadAt(t.Context(), ent, make([]byte, 100), 0)
		if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took != o.ReadTimeout {
			t.Errorf("ReadAt = %v after %s, want a timeout after ReadTimeout %s", err, took, o.ReadTimeout)
		}
		if !strings.Contains(fmt.Sprint(err), "read timeout") {
			t.Errorf("ReadAt = %v, want it to name the read timeout", err)
		}
		synctest.Wait()
		if n := tr.Stalling(); n != 0 {
			t.Errorf("%d requests still running after the reader gave up", n)
		}
	})
}

// TestRegistryErrorClasses: what resolving reads from the registry fails
// with the store's classes, keeping remote's too and the message.
func TestRegistryErrorClasses(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"404", fmt.Errorf("fetch manifest of x: %w", remote.ErrNotFound), ErrNotFound},
		{"digest mismatch", fmt.Errorf("fetch blob of x: %w", remote.ErrVerify), ErrVerify},
		{"unauthorized", fmt.Errorf("fetch manifest of x: %w", registryauth.ErrUnauthorized), registryauth.ErrUnauthorized},
		{"other", io.ErrUnexpectedEOF, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := registryError(tt.err)
			if !errors.Is(got, tt.want) || !errors.Is(got, tt.err) || got.Error() != tt.err.Error() {
				t.Errorf("registryError(%v) = %v, want it to wrap %v and keep its message", tt.err, got, tt.want)
			}
		})
	}
	if registryError(nil) != nil {
		t.Error("registryError(nil) != nil")
	}
}
