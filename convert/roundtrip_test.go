// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	refesgz "github.com/containerd/stargz-snapshotter/estargz"
	refexternaltoc "github.com/containerd/stargz-snapshotter/estargz/externaltoc"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/stargz-store/stargz-store/store/estargz"
)

// richTar is a layer with what a round trip must keep: modes with setuid/sticky bits, owners
// and their names, xattrs, symlinks, hard links, a device, a fifo, a whiteout, an empty file and
// a file of several chunks.
func richTar(t *testing.T) []byte {
	t.Helper()
	mtime := time.Unix(1700000000, 0)
	big := randomText(7, 200<<10)
	entries := []struct {
		h    tar.Header
		body string
	}{
		{tar.Header{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o755}, ""},
		{tar.Header{Name: "usr/bin/", Typeflag: tar.TypeDir, Mode: 0o1777, Uid: 0, Gid: 0}, ""},
		{tar.Header{Name: "usr/bin/su", Typeflag: tar.TypeReg, Mode: 0o4755, Uid: 0, Gid: 0, Uname: "root", Gname: "root"}, "#!/bin/su\n"},
		{tar.Header{Name: "usr/bin/tool", Typeflag: tar.TypeReg, Mode: 0o750, Uid: 1000, Gid: 100, Uname: "dev", Gname: "users",
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02", "SCHILY.xattr.user.note": "hello"}}, big},
		{tar.Header{Name: "usr/bin/tool-link", Typeflag: tar.TypeLink, Linkname: "usr/bin/tool"}, ""},
		{tar.Header{Name: "usr/bin/sym", Typeflag: tar.TypeSymlink, Linkname: "tool", Mode: 0o777}, ""},
		{tar.Header{Name: "usr/empty", Typeflag: tar.TypeReg, Mode: 0o600, Uid: 33, Gid: 33}, ""},
		{tar.Header{Name: "dev/", Typeflag: tar.TypeDir, Mode: 0o755}, ""},
		{tar.Header{Name: "dev/null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3}, ""},
		{tar.Header{Name: "dev/fifo", Typeflag: tar.TypeFifo, Mode: 0o644}, ""},
		{tar.Header{Name: "opt/", Typeflag: tar.TypeDir, Mode: 0o700, PAXRecords: map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y"}}, ""},
		{tar.Header{Name: "opt/.wh.gone", Typeflag: tar.TypeReg, Mode: 0o644}, ""},
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.h
		h.ModTime, h.Format = mtime, tar.FormatPAX
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tarFile is what a round trip compares of one tar entry.
type tarFile struct {
	Type         byte
	Mode         int64
	UID, GID     int
	Uname, Gname string
	Link         string
	Dev          [2]int64
	Xattrs       map[string]string
	Size         int64
	Content      digest.Digest
	ModTime      int64
}

// tarFiles reads a tar stream into its entries by cleaned name, leaving out what eStargz adds.
func tarFiles(t *testing.T, r io.Reader) map[string]tarFile {
	t.Helper()
	out := map[string]tarFile{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		name := cleanName(h.Name)
		if name == estargz.TOCTarName || name == estargz.PrefetchLandmark || name == estargz.NoPrefetchLandmark {
			continue
		}
		f := tarFile{Type: h.Typeflag, Mode: h.Mode, UID: h.Uid, GID: h.Gid, Uname: h.Uname, Gname: h.Gname,
			Link: h.Linkname, Dev: [2]int64{h.Devmajor, h.Devminor}, Xattrs: map[string]string{}, Size: h.Size, ModTime: h.ModTime.Unix()}
		for k, v := range h.PAXRecords {
			if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
				f.Xattrs[x] = v
			}
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		f.Content = digest.FromBytes(body)
		out[name] = f
	}
}

// checkRoundTrip compares every entry of the converted blob (what a plain pull unpacks) and of
// its TOC (what the store serves lazily) with the source tar.
func checkRoundTrip(t *testing.T, srcTar, blob []byte, b *estargz.Blob) {
	t.Helper()
	want := tarFiles(t, bytes.NewReader(srcTar))
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	got := tarFiles(t, zr)
	if !reflect.DeepEqual(got, want) {
		for name, w := range want {
			if g, ok := got[name]; !ok || !reflect.DeepEqual(g, w) {
				t.Errorf("unpacked %s = %+v, want %+v", name, g, w)
			}
		}
		t.Fatalf("the converted layer unpacks to %d entries, the source to %d", len(got), len(want))
	}
	for name, w := range want {
		e, ok := b.Index.Lookup(name)
		if !ok {
			t.Errorf("TOC lacks %s", name)
			continue
		}
		if w.Type == tar.TypeLink {
			if target, _ := b.Index.Lookup(cleanName(w.Link)); target != e {
				t.Errorf("TOC: hard link %s does not resolve to %s", name, w.Link)
			}
			continue
		}
		xattrs := map[string]string{}
		for k, v := range e.Xattrs {
			xattrs[k] = string(v)
		}
		if e.Mode&0o7777 != uint32(w.Mode&0o7777) || e.UID != w.UID || e.GID != w.GID || e.LinkName != w.Link ||
			!reflect.DeepEqual(xattrs, w.Xattrs) || (w.Type == tar.TypeReg && e.Size != w.Size) {
			t.Errorf("TOC %s: mode %o uid %d gid %d link %q xattrs %v size %d; want %o %d %d %q %v %d",
				name, e.Mode, e.UID, e.GID, e.LinkName, xattrs, e.Size, w.Mode, w.UID, w.GID, w.Link, w.Xattrs, w.Size)
		}
	}
}

// getManifest returns repo:tag's manifest.
func getManifest(t *testing.T, reg *testRegistry, repo, tag string) ocispec.Manifest {
	t.Helper()
	raw, ok := reg.get(t, repo+"/manifests/"+tag)
	if !ok {
		t.Fatalf("%s:%s missing", repo, tag)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestImageRoundTrip converts a layer with every kind of entry, with an embedded TOC, an
// external one, and an external one keeping the DiffID, and checks content and metadata of
// every entry, and that the reference estargz library opens and verifies the result.
func TestImageRoundTrip(t *testing.T) {
	src := richTar(t)
	tests := []struct {
		name     string
		external bool
		keep     bool
		minChunk int
	}{
		{name: "embedded"},
		{name: "embedded packed", minChunk: 16 << 10},
		{name: "external", external: true},
		{name: "keep-diff-id", external: true, keep: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newTestRegistry(t, nil)
			reg.pushImage(t, "src", "v1", ocispec.MediaTypeImageManifest,
				[]testLayer{{tar: src, blob: gzipBytes(t, src), mediaType: ocispec.MediaTypeImageLayerGzip}})
			opts := testOptions(t)
			opts.ChunkSize, opts.MinChunkSize = 64<<10, tt.minChunk
			opts.ExternalTOC, opts.KeepDiffID = tt.external, tt.keep
			if _, err := Image(t.Context(), reg.host+"/src:v1", reg.host+"/dst:v1", opts); err != nil {
				t.Fatalf("Image() error: %v", err)
			}
			m := getManifest(t, reg, "dst", "v1")
			l := m.Layers[0]
			blob, _ := reg.get(t, "dst/blobs/"+l.Digest.String())
			toc := digest.Digest(l.Annotations[tocDigestAnnotation])
			var tocBlob []byte
			var b *estargz.Blob
			var err error
			if tt.external {
				tocBlob = fetchTOCBlob(t, reg, l.Digest)
				b, err = estargz.OpenExternal(t.Context(), bytes.NewReader(blob), int64(len(blob)), tocBlob, estargz.OpenOptions{TOCDigest: toc})
			} else {
				b, err = estargz.Open(t.Context(), bytes.NewReader(blob), int64(len(blob)), estargz.OpenOptions{TOCDigest: toc})
			}
			if err != nil {
				t.Fatalf("open converted layer: %v", err)
			}
			checkRoundTrip(t, src, blob, b)
			checkReference(t, blob, tocBlob, toc, tt.minChunk == 0)
			if tt.keep {
				cfgRaw, _ := reg.get(t, "dst/blobs/"+m.Config.Digest.String())
				var cfg ocispec.Image
				if err := json.Unmarshal(cfgRaw, &cfg); err != nil {
					t.Fatal(err)
				}
				if cfg.RootFS.DiffIDs[0] != digest.FromBytes(src) {
					t.Errorf("DiffID %s, want the source's %s", cfg.RootFS.DiffIDs[0], digest.FromBytes(src))
				}
			}
		})
	}
}

// fetchTOCBlob returns the TOC of blob from dst:v1-esgztoc.
func fetchTOCBlob(t *testing.T, reg *testRegistry, blob digest.Digest) []byte {
	t.Helper()
	tm := getManifest(t, reg, "dst", "v1-esgztoc")
	for _, l := range tm.Layers {
		if l.Annotations[layerDigestAnnotation] == blob.String() {
			b, _ := reg.get(t, "dst/blobs/"+l.Digest.String())
			return b
		}
	}
	t.Fatalf("TOC image has no TOC for %s", blob)
	return nil
}

// checkReference opens blob with the reference library (with the external-TOC decompressor
// when tocBlob is set), verifies the TOC and, unless packed, every chunk, and reads all files.
func checkReference(t *testing.T, blob, tocBlob []byte, toc digest.Digest, verifyChunks bool) {
	t.Helper()
	var opts []refesgz.OpenOption
	if tocBlob != nil {
		opts = append(opts, refesgz.WithDecompressors(refexternaltoc.NewGzipDecompressor(func() ([]byte, error) { return tocBlob, nil })))
	}
	r, err := refesgz.Open(io.NewSectionReader(bytes.NewReader(blob), 0, int64(len(blob))), opts...)
	if err != nil {
		t.Fatalf("reference Open: %v", err)
	}
	if r.TOCDigest() != toc {
		t.Errorf("reference TOC digest %s, annotation %s", r.TOCDigest(), toc)
	}
	if !verifyChunks {
		return
	}
	v, err := r.VerifyTOC(toc)
	if err != nil {
		t.Fatalf("reference VerifyTOC: %v", err)
	}
	e, ok := r.Lookup("usr/bin/tool")
	if !ok {
		t.Fatal("reference: no usr/bin/tool")
	}
	for off := int64(0); off < e.Size; {
		ce, ok := r.ChunkEntryForOffset("usr/bin/tool", off)
		if !ok {
			t.Fatalf("reference: no chunk at %d", off)
		}
		dv, err := v.Verifier(ce)
		if err != nil {
			t.Fatal(err)
		}
		sr, err := r.OpenFile("usr/bin/tool")
		if err != nil {
			t.Fatal(err)
		}
		size := ce.ChunkSize
		if size == 0 {
			size = e.Size - ce.ChunkOffset
		}
		if _, err := io.Copy(dv, io.NewSectionReader(sr, ce.ChunkOffset, size)); err != nil || !dv.Verified() {
			t.Errorf("reference: chunk at %d does not verify (%v)", ce.ChunkOffset, err)
		}
		off = ce.ChunkOffset + size
	}
}

func TestImageKeepDiffIDRefused(t *testing.T) {
	opts := testOptions(t)
	opts.KeepDiffID = true
	if _, err := Image(t.Context(), "localhost/src:v1", "localhost/dst:v1", opts); !errors.Is(err, ErrKeepDiffID) {
		t.Errorf("Image(KeepDiffID without ExternalTOC) = %v, want ErrKeepDiffID", err)
	}
	opts.ExternalTOC, opts.PrioritizedFiles = true, []string{"a"}
	if _, err := Image(t.Context(), "localhost/src:v1", "localhost/dst:v1", opts); err == nil || !strings.Contains(err.Error(), "prioritized") {
		t.Errorf("Image(KeepDiffID with prioritized files) = %v, want a refusal", err)
	}
}

// TestImageExternalTOCIdempotent converts an external-TOC image again: its layers come out the
// same.
func TestImageExternalTOCIdempotent(t *testing.T) {
	reg := newTestRegistry(t, nil)
	layers := gzipLayers(t)
	reg.pushImage(t, "src", "v1", dockerManifestType, layers)
	opts := testOptions(t)
	opts.ExternalTOC = true
	d1, err := Image(t.Context(), reg.host+"/src:v1", reg.host+"/dst:v1", opts)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := Image(t.Context(), reg.host+"/dst:v1", reg.host+"/dst:v2", opts)
	if err != nil {
		t.Fatal(err)
	}
	if d1 != d2 {
		t.Errorf("manifest %s after the first conversion, %s after the second", d1, d2)
	}
}

// TestImageOCILayout converts from a registry into an OCI layout and back.
func TestImageOCILayout(t *testing.T) {
	reg := newTestRegistry(t, nil)
	layers := sampleLayers(t)
	reg.pushImage(t, "src", "v1", ocispec.MediaTypeImageManifest, layers)
	dir := filepath.Join(t.TempDir(), "layout")
	opts := testOptions(t)
	opts.ExternalTOC = true
	d, err := Image(t.Context(), reg.host+"/src:v1", "oci:"+dir+":v1", opts)
	if err != nil {
		t.Fatalf("Image(to oci:) error: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", d.Encoded())); err != nil {
		t.Errorf("manifest not in the layout: %v", err)
	}
	index, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil || !strings.Contains(string(index), "v1-esgztoc") {
		t.Errorf("index.json has no v1-esgztoc image (%v):\n%s", err, index)
	}
	opts.ExternalTOC = false
	d2, err := Image(t.Context(), "oci:"+dir+":v1", "docker://"+reg.host+"/back:v1", opts)
	if err != nil {
		t.Fatalf("Image(from oci:) error: %v", err)
	}
	_ = d2
	archive := filepath.Join(t.TempDir(), "img.tar")
	if _, err := Image(t.Context(), reg.host+"/src:v1", "oci-archive:"+archive+":v1", opts); err != nil {
		t.Fatalf("Image(to oci-archive:) error: %v", err)
	}
	d3, err := Image(t.Context(), "oci-archive:"+archive+":v1", reg.host+"/back:v2", opts)
	if err != nil {
		t.Fatalf("Image(from oci-archive:) error: %v", err)
	}
	checkConverted(t, reg, "back", "v2", d3, layers)
}

// TestImageContainersStorage goes through podman save and load, with a fake podman.
func TestImageContainersStorage(t *testing.T) {
	reg := newTestRegistry(t, nil)
	layers := gzipLayers(t)
	reg.pushImage(t, "src", "v1", dockerManifestType, layers)
	opts := testOptions(t)
	var calls []string
	var loaded []byte
	opts.runPodman = func(ctx context.Context, podman string, args ...string) error {
		calls = append(calls, strings.Join(args[:1], " "))
		switch args[0] {
		case "save": // export src:v1 from the registry as the "local" image
			out := args[len(args)-2]
			_, err := Image(ctx, reg.host+"/src:v1", "oci-archive:"+out+":localhost/src:v1", testOptions(t))
			return err
		case "load":
			var err error
			loaded, err = os.ReadFile(args[len(args)-1])
			return err
		}
		return fmt.Errorf("unexpected podman %v", args)
	}
	if _, err := Image(t.Context(), "containers-storage:localhost/src:v1", "containers-storage:localhost/dst:v1", opts); err != nil {
		t.Fatalf("Image() error: %v", err)
	}
	if strings.Join(calls, ",") != "save,load" || len(loaded) == 0 {
		t.Errorf("podman calls %v, loaded %d bytes", calls, len(loaded))
	}
	if !bytes.Contains(loaded, []byte("localhost/dst:v1")) {
		t.Error("the loaded archive does not name localhost/dst:v1")
	}
	assertEmptyDir(t, opts.TempDir)
}

// TestImageDiskFull fails every temporary write with ENOSPC: a clear error, nothing tagged and
// no temporary file left.
func TestImageDiskFull(t *testing.T) {
	reg := newTestRegistry(t, nil)
	reg.pushImage(t, "src", "v1", dockerManifestType, gzipLayers(t))
	opts := testOptions(t)
	opts.tempWriter = func(f *os.File) io.Writer { return fullDisk{} }
	_, err := Image(t.Context(), reg.host+"/src:v1", reg.host+"/dst:v1", opts)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "no space left on device") {
		t.Errorf("Image() error = %v, want ENOSPC", err)
	}
	if _, ok := reg.get(t, "dst/manifests/v1"); ok {
		t.Error("destination tag exists after a failed conversion")
	}
	assertEmptyDir(t, opts.TempDir)
}

type fullDisk struct{}

func (fullDisk) Write([]byte) (int, error) {
	return 0, &os.PathError{Op: "write", Path: "/tmp/stargz-convert-layer", Err: syscall.ENOSPC}
}

// TestImageInterruptedPush fails uploads to the destination: neither the image nor (with an
// external TOC) the TOC image may be tagged.
func TestImageInterruptedPush(t *testing.T) {
	for _, what := range []string{"blob", "manifest", "toc-manifest"} {
		t.Run(what, func(t *testing.T) {
			reg := newTestRegistry(t, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					fail := false
					switch what {
					case "blob":
						fail = r.Method == http.MethodPatch || (r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/dst/blobs/uploads/"))
					case "manifest":
						fail = r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/dst/manifests/v1")
					case "toc-manifest":
						fail = r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/dst/manifests/v1-esgztoc")
					}
					if fail {
						// Drop the connection, as a network failure would.
						if hj, ok := w.(http.Hijacker); ok {
							if c, _, err := hj.Hijack(); err == nil {
								c.Close()
								return
							}
						}
						http.Error(w, "gone", http.StatusInternalServerError)
						return
					}
					h.ServeHTTP(w, r)
				})
			})
			reg.pushImage(t, "src", "v1", dockerManifestType, gzipLayers(t))
			opts := testOptions(t)
			opts.ExternalTOC = true
			_, err := Image(t.Context(), reg.host+"/src:v1", reg.host+"/dst:v1", opts)
			if !errors.Is(err, ErrInterrupted) {
				t.Fatalf("Image() = %v, want ErrInterrupted", err)
			}
			t.Logf("error: %v", err)
			if _, ok := reg.get(t, "dst/manifests/v1"); ok {
				t.Error("destination tag exists after a failed push")
			}
			assertEmptyDir(t, opts.TempDir)
		})
	}
}
