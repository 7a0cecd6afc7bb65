// SPDX-License-Identifier: Apache-2.0

package remote

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/stargz-store/stargz-store/internal/faultproxy"
	"github.com/stargz-store/stargz-store/internal/testutil"
	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
)

// faultBlob is a Blob of an eStargz layer read through a fault-injecting
// proxy in front of the in-process registry (which serves multi-range
// requests), with the store's policy of its fault tests, and the layer's
// blob.
func faultBlob(t *testing.T) (*Blob, *faultproxy.Proxy, []byte) {
	t.Helper()
	testutil.CheckLeaks(t)
	reg := testutil.NewRegistry(t)
	reg.SetMultiRange(testutil.MultiRangeServe)
	px, err := faultproxy.Start(faultproxy.Options{Addr: "127.0.0.1:0", Backend: reg.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { px.Close() })
	files := append(sampleFiles(), testutil.File{Name: "etc/motd", Data: strings.Repeat("fault tolerance\n", 4000)})
	layer := testutil.ESGZLayer(t, testutil.Tar(t, files...), testutil.ESGZOptions{ChunkSize: 8192})
	reg.Push(t, "app", "v1", testutil.NewImage(t, ocispec.Platform{OS: "linux", Architecture: "amd64"}, layer))
	conf := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, "[[registry]]\nlocation = %q\ninsecure = true\n", px.Addr()), 0o600); err != nil {
		t.Fatal(err)
	}
	regs, err := registryauth.New(registryauth.Options{AuthFile: reg.AuthFile(t, "", ""), RegistriesConf: conf,
		RegistriesConfDir: t.TempDir(), CertDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { regs.Close() })
	ref, err := refspec.Parse(px.Addr() + "/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	eps, err := regs.Endpoints(t.Context(), ref)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{FetchTimeout: 200 * time.Millisecond, ReadTimeout: 2 * time.Second, Backoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
	return NewBlob(ref, layer.Desc.Digest, layer.Desc.Size, eps, NewHost(8), o), px, layer.Blob
}

// TestFaultsBadMultiRange: a malformed multi-range answer never yields
// wrong bytes: the blob is read one range per request instead.
func TestFaultsBadMultiRange(t *testing.T) {
	for _, m := range []faultproxy.Multi{faultproxy.MultiDupHole, faultproxy.MultiOverlap, faultproxy.MultiMissing,
		faultproxy.MultiGarbage, faultproxy.MultiOutside} {
		t.Run(string(m), func(t *testing.T) {
			blob, px, data := faultBlob(t)
			px.Set(faultproxy.Fault{Mode: faultproxy.ModeBadMulti, Multi: m})
			size := int64(len(data))
			spans := []Span{{10, 110}, {size / 2, size/2 + 100}, {size - 100, size}}
			bufs := [][]byte{make([]byte, 100), make([]byte, 100), make([]byte, 100)}
			if err := blob.ReadRanges(t.Context(), spans, bufs, Read, nil); err != nil {
				t.Fatalf("ReadRanges = %v", err)
			}
			for i, s := range spans {
				if want := data[s.Off:s.End]; !bytes.Equal(bufs[i], want) {
					t.Errorf("span %d = %x, want %x", i, bufs[i], want)
				}
			}
			if single := blob.single.Load(); single != (m != faultproxy.MultiOverlap) {
				t.Errorf("one range per request = %v after a %s answer", single, m)
			}
		})
	}
}
