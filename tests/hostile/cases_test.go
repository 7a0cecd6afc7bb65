// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store"
	"github.com/stargz-store/stargz-store/store/zstdchunked"
)

type memBlob []byte

func (b memBlob) ReadAt(_ context.Context, p []byte, off int64) (int, error) {
	return bytes.NewReader(b).ReadAt(p, off)
}

// TestCases opens every case's layer with the store, as the e2e test
// will through the mount, and checks that it is refused or served as
// cases.json says, with the content it says.
func TestCases(t *testing.T) {
	for _, mk := range allCases {
		tc, l, err := mk()
		if err != nil {
			t.Fatalf("%s: %v", tc.Name, err)
		}
		t.Run(tc.Name, func(t *testing.T) {
			if strings.Contains(tc.Name, "big") || strings.Contains(tc.Name, "span") {
				if testing.Short() {
					t.Skip("a 128 MiB layer")
				}
			}
			checkCase(t, tc, l)
		})
	}
}

func checkCase(t *testing.T, tc testCase, l layer) {
	desc := store.LayerDesc{Digest: digest.FromBytes(l.blob), Size: int64(len(l.blob)), Annotations: l.annotations, UncompressedSize: 1}
	if tc.Format == "estargz" {
		desc.Format, desc.TOCDigest = store.FormatEStargz, digest.Digest(l.annotations["containerd.io/snapshot/stargz/toc.digest"])
	} else {
		desc.Format, desc.TOCDigest = store.FormatZstdChunked, digest.Digest(l.annotations[zstdchunked.ManifestChecksumAnnotation])
	}
	ly, err := store.OpenLayer(t.Context(), memBlob(l.blob), desc, store.LayerOptions{})
	if tc.Expect == "refused" {
		if !errors.Is(err, store.ErrNotLazy) {
			t.Fatalf("OpenLayer() error = %v, want ErrNotLazy (%s)", err, tc.Why)
		}
		return
	}
	if err != nil {
		t.Fatalf("OpenLayer(): %v", err)
	}
	defer ly.Close()
	e, ok := ly.Index().Lookup(tc.File)
	if !ok {
		t.Fatalf("no %s", tc.File)
	}
	if tc.Links > 0 && e.NumLink != tc.Links {
		t.Errorf("%s has %d links, want %d", tc.File, e.NumLink, tc.Links)
	}
	data := make([]byte, e.Size)
	if _, err := ly.ReadAt(t.Context(), e, data, 0); err != nil {
		t.Fatal(err)
	}
	if got := sha(data); got != tc.SHA256 {
		t.Errorf("%s has sha256 %s, want %s", tc.File, got, tc.SHA256)
	}
	if tc.PrefetchBytes != ly.PrefetchEnd() {
		t.Errorf("PrefetchEnd() = %d, want %d", ly.PrefetchEnd(), tc.PrefetchBytes)
	}
}
