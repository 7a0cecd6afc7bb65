// SPDX-License-Identifier: Apache-2.0

package remote

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
)

func TestCheckContentRange(t *testing.T) {
	tests := []struct {
		h  string
		ok bool
	}{
		{"bytes 10-19/100", true},
		{"bytes 10-19/*", true},
		{"bytes 10-18/100", false},
		{"bytes 0-19/100", false},
		{"bytes 10-19", false},
		{"10-19/100", false},
		{"bytes a-19/100", false},
		{"", false},
	}
	for _, tt := range tests {
		if err := checkContentRange(tt.h, 10, 19); (err == nil) != tt.ok {
			t.Errorf("checkContentRange(%q, 10, 19) = %v, want ok=%v", tt.h, err, tt.ok)
		}
	}
}

// newBlobEnv is a Blob over the first layer of an image in a registry
// behind a mirror that lacks the blob.
func newBlobEnv(t *testing.T) (*Blob, testutil.Layer, *testutil.Registry, *testutil.Registry) {
	t.Helper()
	regs, ref, layer, primary, mirror := mirrored(t)
	eps, err := regs.Endpoints(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 2 {
		t.Fatalf("%d endpoints, want mirror and primary", len(eps))
	}
	o := Options{FetchTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, Backoff: 1, MaxBackoff: 2 * time.Second}
	return NewBlob(ref, layer.Desc.Digest, layer.Desc.Size, eps, nil, o), layer, primary, mirror
}

// mirrored pushes app:v1 (one eStargz layer) to a primary registry and
// returns registries that put an empty mirror before it.
func mirrored(t *testing.T) (*registryauth.Registries, refspec.Reference, testutil.Layer, *testutil.Registry, *testutil.Registry) {
	t.Helper()
	layer := testutil.ESGZLayer(t, testutil.Tar(t, sampleFiles()...), testutil.ESGZOptions{})
	regs, ref, primary, mirror := testutil.Mirrored(t, testutil.NewImage(t, ocispec.Platform{OS: "linux", Architecture: "amd64"}, layer))
	return regs, ref, layer, primary, mirror
}

// sampleFiles are a few files, one of 40000 random (so incompressible)
// but reproducible bytes.
func sampleFiles() []testutil.File {
	big := make([]byte, 40000)
	r := rand.NewChaCha8([32]byte{1})
	_, _ = r.Read(big)
	return []testutil.File{
		{Name: "etc/"},
		{Name: "etc/hostname", Data: "host-b\n"},
		{Name: "bin/"},
		{Name: "bin/big", Data: string(big)},
		{Name: "bin/link", Link: "big"},
	}
}

func TestBlobMirrorFallback(t *testing.T) {
	b, layer, primary, mirror := newBlobEnv(t)
	for i := range 3 {
		p := make([]byte, 20)
		off := int64(30 * i)
		if n, err := b.ReadAt(t.Context(), p, off); err != nil || string(p[:n]) != string(layer.Blob[off:off+20]) {
			t.Fatalf("ReadAt(%d) = %d, %v", off, n, err)
		}
	}
	if n := mirror.Count(testutil.Request.IsRange); n != 1 {
		t.Errorf("mirror got %d range requests, want 1 (then the primary is preferred)", n)
	}
	if n := primary.Count(testutil.Request.IsRange); n != 3 {
		t.Errorf("primary got %d range requests, want 3", n)
	}
}

func TestBlobEnds(t *testing.T) {
	b, layer, _, _ := newBlobEnv(t)
	size := int64(len(layer.Blob))
	p := make([]byte, 100)
	n, err := b.ReadAt(t.Context(), p, size-10)
	if n != 10 || !errors.Is(err, io.EOF) || string(p[:n]) != string(layer.Blob[size-10:]) {
		t.Errorf("ReadAt across the end = %d, %v; want 10, io.EOF", n, err)
	}
	if n, err := b.ReadAt(t.Context(), p, size); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("ReadAt at the end = %d, %v; want 0, io.EOF", n, err)
	}
	if _, err := b.ReadAt(t.Context(), p, -1); err == nil {
		t.Errorf("ReadAt(-1) succeeded")
	}
}

func TestBlobBadContentRange(t *testing.T) {
	b, _, primary, _ := newBlobEnv(t)
	b.eps = b.eps[1:] // primary only
	primary.Inject(testutil.Fault{Match: func(r *http.Request) bool {
		r.Header.Set("Range", strings.Replace(r.Header.Get("Range"), "=10-", "=11-", 1))
		return false
	}})
	p := make([]byte, 5)
	if _, err := b.ReadAt(t.Context(), p, 10); err == nil || !strings.Contains(err.Error(), "Content-Range") {
		t.Errorf("ReadAt with a wrong Content-Range = %v, want an error naming it", err)
	}
}

func TestBlobMultiRange(t *testing.T) {
	tests := []struct {
		name       string
		mode       testutil.MultiRange
		wantReqs   int
		wantSingle bool
	}{
		{"multipart answer", testutil.MultiRangeServe, 1, false},
		{"400 falls back to single ranges", testutil.MultiRangeRefuse, 1 + 3, true},
		{"first range only falls back", testutil.MultiRangeFirst, 1 + 3, true},
		{"whole blob answer is used", -1, 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, layer, primary, _ := newBlobEnv(t)
			b.eps = b.eps[1:] // primary only
			if tt.mode < 0 {
				primary.Inject(testutil.Fault{IgnoreRange: true, Times: 1})
			} else {
				primary.SetMultiRange(tt.mode)
			}
			spans := []Span{{10, 20}, {100, 150}, {400, 401}}
			bufs := make([][]byte, len(spans))
			for i, s := range spans {
				bufs[i] = make([]byte, s.Len())
			}
			if err := b.ReadRanges(t.Context(), spans, bufs, Read, nil); err != nil {
				t.Fatalf("ReadRanges() = %v", err)
			}
			for i, s := range spans {
				if !bytes.Equal(bufs[i], layer.Blob[s.Off:s.End]) {
					t.Errorf("span %v: wrong bytes", s)
				}
			}
			if n := primary.Count(testutil.Request.IsRange); n != tt.wantReqs {
				t.Errorf("%d range requests, want %d", n, tt.wantReqs)
			}
			if b.single.Load() != tt.wantSingle {
				t.Errorf("single-range mode = %v, want %v", b.single.Load(), tt.wantSingle)
			}
		})
	}
}

func TestParseContentRange(t *testing.T) {
	tests := []struct {
		h           string
		first, last int64
		ok          bool
	}{
		{"bytes 0-9/100", 0, 9, true},
		{"bytes 5-5/*", 5, 5, true},
		{"bytes 9-5/100", 0, 0, false},
		{"bytes -1-5/100", 0, 0, false},
		{"bytes 1-5", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		first, last, err := parseContentRange(tt.h)
		if (err == nil) != tt.ok || first != tt.first || last != tt.last {
			t.Errorf("parseContentRange(%q) = %d, %d, %v; want %d, %d, ok=%v", tt.h, first, last, err, tt.first, tt.last, tt.ok)
		}
	}
}

// TestReadFillingReports: the bytes read so far are reported as they
// arrive, growing, ending at the whole buffer.
func TestReadFillingReports(t *testing.T) {
	src := bytes.Repeat([]byte("x"), 3*fillStep+5)
	buf := make([]byte, len(src))
	var seen []int64
	if err := readFilling(io.MultiReader(bytes.NewReader(src[:100]), bytes.NewReader(src[100:])), buf, func(n int64) { seen = append(seen, n) }); err != nil {
		t.Fatal(err)
	}
	if len(seen) < 4 || seen[len(seen)-1] != int64(len(src)) {
		t.Fatalf("reports %v, want at least 4 ending at %d", seen, len(src))
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] <= seen[i-1] {
			t.Fatalf("reports %v do not grow", seen)
		}
	}
	if err := readFilling(bytes.NewReader(src[:10]), buf, func(int64) {}); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short body: %v, want io.ErrUnexpectedEOF", err)
	}
}
