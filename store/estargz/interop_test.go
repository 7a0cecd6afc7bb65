// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"path"
	"strings"
	"testing"
	"time"

	refestargz "github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store/index"
)

var rdMTime = time.Date(2024, 1, 2, 3, 4, 5, 600_000_000, time.UTC)

// rdNoise returns n incompressible bytes.
func rdNoise(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// rdInteropFiles is a layer exercising every entry kind the format has.
func rdInteropFiles() []rdFile {
	owned := func(f rdFile, uid, gid int, uname, gname string) rdFile {
		f.hdr.Uid, f.hdr.Gid, f.hdr.Uname, f.hdr.Gname = uid, gid, uname, gname
		return f
	}
	mode := func(f rdFile, m int64) rdFile { f.hdr.Mode = m; return f }
	special := func(name string, typ byte, major, minor int64) rdFile {
		return rdFile{hdr: tar.Header{Typeflag: typ, Name: name, Mode: 0o644, Devmajor: major, Devminor: minor}}
	}
	link := func(name, target string, typ byte) rdFile {
		return rdFile{hdr: tar.Header{Typeflag: typ, Name: name, Linkname: target, Mode: 0o777}}
	}
	xattr := rdReg("etc/xattr", "with xattrs")
	xattr.hdr.PAXRecords = map[string]string{
		"SCHILY.xattr.user.foo":               "bar",
		"SCHILY.xattr.security.capability":    "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00",
		"SCHILY.xattr.trusted.overlay.opaque": "y",
	}
	big := append(rdNoise(1, 300<<10), bytes.Repeat([]byte("compressible "), 20<<10)...)
	files := []rdFile{
		rdDir("./"),
		owned(rdDir("etc/"), 0, 0, "root", "root"),
		owned(rdReg("etc/passwd", "root:x:0:0::/root:/bin/sh\n"), 0, 0, "root", "root"),
		owned(mode(rdReg("etc/shadow", "root:*:1::::::\n"), 0o640), 0, 42, "root", "shadow"),
		xattr,
		owned(rdDir("usr/"), 0, 0, "", ""),
		rdDir("usr/bin/"),
		owned(mode(rdFile{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "usr/bin/app"}, data: big}, 0o4755), 1000, 1000, "user", "users"),
		owned(link("usr/bin/app-hardlink", "usr/bin/app", tar.TypeLink), 1000, 1000, "", ""),
		link("usr/bin/sh", "/bin/busybox", tar.TypeSymlink),
		link("lib", "usr/lib", tar.TypeSymlink),
		link("escape", "../../../../etc/passwd", tar.TypeSymlink),
		rdDir("dev/"),
		special("dev/null", tar.TypeChar, 1, 3),
		special("dev/sda", tar.TypeBlock, 8, 0),
		rdDir("run/"),
		special("run/fifo", tar.TypeFifo, 0, 0),
		rdReg("empty", ""),
		rdReg(".wh.deleted", ""),
		rdDir("opq/"),
		rdReg("opq/.wh..wh..opq", ""),
		special("opq/whiteout-char", tar.TypeChar, 0, 0),
		mode(rdDir("sticky/"), 0o1777),
		rdReg("implicit/parents/file", "no dir entries above me"),
		{hdr: tar.Header{Typeflag: tar.TypeReg, Name: "zeros.bin", Mode: 0o600}, data: make([]byte, 200<<10)},
		owned(rdReg("owned-again", "uid 1000 name carried forward"), 1000, 1000, "user", "users"),
	}
	deep := ""
	for i := range 40 {
		deep = path.Join(deep, fmt.Sprintf("d%02d", i))
		files = append(files, rdDir(deep+"/"))
	}
	files = append(files, rdReg(deep+"/leaf", "deep"), rdDir("small/"))
	for i := range 60 {
		files = append(files, rdFile{hdr: tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("small/f%03d", i), Mode: 0o644},
			data: rdNoise(uint64(100+i), 50+i*37)})
	}
	for i := range files {
		// Writers give a user or group name only when it changes, so a
		// reader carries names forward per id: keep them consistent.
		h := &files[i].hdr
		h.ModTime = rdMTime
		h.Uname, h.Gname = map[int]string{0: "root", 1000: "user"}[h.Uid], map[int]string{0: "root", 42: "shadow", 1000: "users"}[h.Gid]
	}
	return files
}

// rdRefBuild builds a blob with the reference library.
func rdRefBuild(t testing.TB, tarb []byte, opts ...refestargz.Option) ([]byte, digest.Digest) {
	t.Helper()
	b, err := refestargz.Build(io.NewSectionReader(bytes.NewReader(tarb), 0, int64(len(tarb))), opts...)
	if err != nil {
		t.Fatalf("reference Build: %v", err)
	}
	defer b.Close()
	blob, err := io.ReadAll(b)
	if err != nil {
		t.Fatal(err)
	}
	return blob, b.TOCDigest()
}

// rdReadFile reads an entry's whole content through DecodeChunk.
func rdReadFile(t testing.TB, blob []byte, e *index.Entry) []byte {
	t.Helper()
	var out []byte
	for _, c := range e.Chunks {
		if c.CompressedEnd > int64(len(blob)) {
			t.Fatalf("%q: chunk at %d ends at %d, past the blob", e.Name, c.Offset, c.CompressedEnd)
		}
		dst := make([]byte, c.Size)
		if err := DecodeChunk(dst, blob[c.CompressedOffset:c.CompressedEnd], c); err != nil {
			t.Fatalf("%q: %v", e.Name, err)
		}
		out = append(out, dst...)
	}
	return out
}

var rdTarTypes = map[byte]index.Type{
	tar.TypeDir: index.TypeDir, tar.TypeReg: index.TypeReg, tar.TypeSymlink: index.TypeSymlink,
	tar.TypeChar: index.TypeChar, tar.TypeBlock: index.TypeBlock, tar.TypeFifo: index.TypeFifo,
}

// rdCheckTree checks that ix holds exactly files (plus implicit parents
// and landmarks), with the same metadata and content.
func rdCheckTree(t *testing.T, blob []byte, ix *index.Index, files []rdFile) {
	t.Helper()
	names := map[string]bool{"": true, PrefetchLandmark: true, NoPrefetchLandmark: true}
	for _, f := range files {
		h := f.hdr
		name, err := index.Clean(h.Name)
		if err != nil {
			t.Fatal(err)
		}
		for p := name; p != "."; p = path.Dir(p) {
			names[p] = true
		}
		e, ok := ix.Lookup(name)
		if !ok {
			t.Errorf("Lookup(%q) found nothing", name)
			continue
		}
		if h.Typeflag == tar.TypeLink {
			if target, _ := ix.Lookup(h.Linkname); target != e {
				t.Errorf("hard link %q resolves to %q, want %q", name, e.Name, h.Linkname)
			}
			if e.NumLink != 2 {
				t.Errorf("%q: NumLink = %d, want 2", e.Name, e.NumLink)
			}
			continue
		}
		rdCheckEntry(t, blob, e, f)
	}
	for _, e := range ix.Entries() {
		if !names[e.Name] {
			t.Errorf("index has %q, which the tar does not", e.Name)
		}
	}
}

func rdCheckEntry(t *testing.T, blob []byte, e *index.Entry, f rdFile) {
	t.Helper()
	h := f.hdr
	xattrs := map[string]string{}
	for k, v := range h.PAXRecords {
		if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			xattrs[x] = v
		}
	}
	gotX := map[string]string{}
	for k, v := range e.Xattrs {
		gotX[k] = string(v)
	}
	got := fmt.Sprintf("%v %o %d:%d %q:%q link=%q size=%d dev=%d,%d xattrs=%q mtime=%v",
		e.Type, e.Mode, e.UID, e.GID, e.UserName, e.GroupName, e.LinkName, e.Size, e.DevMajor, e.DevMinor, gotX, e.ModTime)
	want := fmt.Sprintf("%v %o %d:%d %q:%q link=%q size=%d dev=%d,%d xattrs=%q mtime=%v",
		rdTarTypes[h.Typeflag], h.Mode&0o7777, h.Uid, h.Gid, h.Uname, h.Gname, h.Linkname, int64(len(f.data)),
		h.Devmajor, h.Devminor, xattrs, h.ModTime.Round(time.Second).UTC())
	if got != want {
		t.Errorf("%q:\n got %s\nwant %s", e.Name, got, want)
	}
	if e.Type != index.TypeReg {
		return
	}
	if content := rdReadFile(t, blob, e); !bytes.Equal(content, f.data) {
		t.Errorf("%q: content differs (%d bytes, want %d)", e.Name, len(content), len(f.data))
	}
	if len(f.data) > 0 && e.Digest != digest.FromBytes(f.data) {
		t.Errorf("%q: digest %s, want %s", e.Name, e.Digest, digest.FromBytes(f.data))
	}
	for _, off := range []int64{0, e.Size / 2, e.Size - 1} {
		if c, ok := e.ChunkAt(off); e.Size > 0 && (!ok || off < c.Offset || off >= c.End()) {
			t.Errorf("%q: ChunkAt(%d) = %+v, %v", e.Name, off, c, ok)
		}
	}
}

func TestOpenReferenceBlobs(t *testing.T) {
	files := rdInteropFiles()
	tarb := rdMakeTar(t, files)
	prio := []string{"usr/bin/app", "etc/passwd", "small/f007"}
	tests := []struct {
		name     string
		opts     []refestargz.Option
		prefetch bool
		chunked  bool
		packed   bool
	}{
		{name: "default"},
		{name: "prioritized", opts: []refestargz.Option{refestargz.WithPrioritizedFiles(prio)}, prefetch: true},
		{name: "small chunks", opts: []refestargz.Option{refestargz.WithChunkSize(16 << 10)}, chunked: true},
		{name: "min chunk size", opts: []refestargz.Option{refestargz.WithMinChunkSize(8 << 10)}, packed: true},
		{name: "all", opts: []refestargz.Option{
			refestargz.WithChunkSize(20 << 10), refestargz.WithMinChunkSize(4 << 10),
			refestargz.WithPrioritizedFiles(prio), refestargz.WithCompressionLevel(1),
		}, prefetch: true, chunked: true, packed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blob, tocDigest := rdRefBuild(t, tarb, tt.opts...)
			r := &rdCountingReaderAt{r: bytes.NewReader(blob)}
			b, err := Open(context.Background(), r, int64(len(blob)), OpenOptions{TOCDigest: tocDigest})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if r.calls != 2 {
				t.Errorf("Open made %d ReadAt calls, want 2", r.calls)
			}
			if b.FooterSize != FooterSize || b.TOCDigest != tocDigest {
				t.Errorf("Blob = %+v", b)
			}
			rdCheckTree(t, blob, b.Index, files)
			if tt.prefetch != (b.PrefetchEnd > 0) || tt.prefetch == b.NoPrefetch {
				t.Errorf("PrefetchEnd = %d, NoPrefetch = %v; want prefetch %v", b.PrefetchEnd, b.NoPrefetch, tt.prefetch)
			}
			if tt.prefetch {
				app, _ := b.Index.Lookup("usr/bin/app")
				if last := app.Chunks[len(app.Chunks)-1]; last.CompressedEnd > b.PrefetchEnd {
					t.Errorf("prioritized file ends at %d, past PrefetchEnd %d", last.CompressedEnd, b.PrefetchEnd)
				}
			}
			app, _ := b.Index.Lookup("usr/bin/app")
			if got := len(app.Chunks) > 1; got != tt.chunked {
				t.Errorf("usr/bin/app has %d chunks; chunked = %v", len(app.Chunks), tt.chunked)
			}
			if got := rdHasInner(b.Index); got != tt.packed {
				t.Errorf("some chunk has an inner offset: %v, want %v", got, tt.packed)
			}
		})
	}
}

func rdHasInner(ix *index.Index) bool {
	for _, e := range ix.Entries() {
		for _, c := range e.Chunks {
			if c.InnerOffset > 0 {
				return true
			}
		}
	}
	return false
}

// TestOpenReferenceLegacyStargz reads a blob whose footer is the 47-byte
// legacy one: the reference writer's payload and TOC with the old footer.
func TestOpenReferenceLegacyStargz(t *testing.T) {
	files := rdInteropFiles()
	blob, tocDigest := rdRefBuild(t, rdMakeTar(t, files))
	f, err := ParseFooter(blob[len(blob)-FooterSize:])
	if err != nil {
		t.Fatal(err)
	}
	legacy := append(bytes.Clone(blob[:len(blob)-FooterSize]), rdLegacyFooter(f.TOCOffset)...)
	b, err := rdOpenBytes(legacy, tocDigest)
	if err != nil {
		t.Fatalf("Open(legacy): %v", err)
	}
	if b.FooterSize != LegacyFooterSize {
		t.Errorf("FooterSize = %d, want %d", b.FooterSize, LegacyFooterSize)
	}
	rdCheckTree(t, legacy, b.Index, files)
}

// TestOpenBuild checks that this package's own writer and reader agree.
func TestOpenBuild(t *testing.T) {
	files := rdInteropFiles()
	tarb := rdMakeTar(t, files)
	for _, opts := range []BuildOptions{{}, {ChunkSize: 16 << 10, MinChunkSize: 4 << 10, PrioritizedFiles: []string{"etc/passwd"}}} {
		t.Run(fmt.Sprintf("%+v", opts), func(t *testing.T) {
			var out bytes.Buffer
			res, err := Build(context.Background(), &out, bytes.NewReader(tarb), int64(len(tarb)), opts)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			b, err := rdOpenBytes(out.Bytes(), res.TOCDigest)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			rdCheckTree(t, out.Bytes(), b.Index, files)
		})
	}
}

// TestOpenReferenceWriter reads blobs from the reference streaming writer,
// which (unlike Build) adds no landmark first: with MinChunkSize the first
// payloads share the member at offset 0 and carry inner offsets.
func TestOpenReferenceWriter(t *testing.T) {
	files := rdInteropFiles()[1:] // no "./" entry, so the first entry is a file
	files = append([]rdFile{rdReg("first", "first payload, packed into member 0")}, files...)
	files[0].hdr.ModTime, files[0].hdr.Uname, files[0].hdr.Gname = rdMTime, "root", "root"
	tarb := rdMakeTar(t, files)
	for _, minChunk := range []int{0, 64 << 10} {
		t.Run(fmt.Sprint("min chunk ", minChunk), func(t *testing.T) {
			var out bytes.Buffer
			w := refestargz.NewWriter(&out)
			w.ChunkSize, w.MinChunkSize = 32<<10, minChunk
			if err := w.AppendTar(bytes.NewReader(tarb)); err != nil {
				t.Fatal(err)
			}
			tocDigest, err := w.Close()
			if err != nil {
				t.Fatal(err)
			}
			b, err := rdOpenBytes(out.Bytes(), tocDigest)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			rdCheckTree(t, out.Bytes(), b.Index, files)
			if b.PrefetchEnd != 0 || b.NoPrefetch {
				t.Errorf("landmarks reported in a blob without them: %+v", b)
			}
			if first, _ := b.Index.Lookup("first"); minChunk > 0 && first.Chunks[0].CompressedOffset != 0 {
				t.Errorf("first payload at %+v, want the member at 0", first.Chunks[0])
			}
		})
	}
}
