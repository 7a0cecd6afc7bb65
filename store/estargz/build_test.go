// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
)

// btEntry is one input tar entry.
type btEntry struct {
	hdr  tar.Header
	data []byte
}

var btMTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

func btDirEnt(name string) btEntry {
	return btEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755, ModTime: btMTime}}
}

func btRegEnt(name string, data []byte) btEntry {
	return btEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: btMTime,
		Uid: 1000, Gid: 1000, Uname: "user", Gname: "group"}, data: data}
}

func btLinkEnt(name, target string) btEntry {
	return btEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644, ModTime: btMTime}}
}

func btSymlinkEnt(name, target string) btEntry {
	return btEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: btMTime}}
}

func btDevEnt(name string, typ byte, major, minor int64) btEntry {
	return btEntry{hdr: tar.Header{Typeflag: typ, Name: name, Mode: 0o600, Devmajor: major, Devminor: minor, ModTime: btMTime}}
}

// btRandBytes returns n deterministic, moderately compressible bytes.
func btRandBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	var v uint64
	for i := range b {
		if i%16 == 0 {
			v = r.Uint64()
		}
		b[i] = byte('a' + v&15)
		v >>= 4
	}
	return b
}

// btMakeTar writes entries as a PAX tar.
func btMakeTar(t testing.TB, entries []btEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Format == tar.FormatUnknown {
			h.Format = tar.FormatPAX
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("WriteHeader(%q): %v", h.Name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			t.Fatalf("Write(%q): %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func btBuildBytes(t testing.TB, in []byte, opts BuildOptions) ([]byte, BuildResult) {
	t.Helper()
	var out bytes.Buffer
	res, err := Build(context.Background(), &out, bytes.NewReader(in), int64(len(in)), opts)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return out.Bytes(), res
}

// btReadTar returns the entries of an uncompressed tar stream.
func btReadTar(t testing.TB, r io.Reader) []btEntry {
	t.Helper()
	tr := tar.NewReader(r)
	var out []btEntry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("reading tar: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatalf("reading %q: %v", h.Name, err)
		}
		out = append(out, btEntry{hdr: *h, data: data})
	}
}

func btGunzipAll(t testing.TB, blob []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(blob))
	if err != nil {
		t.Fatalf("gzip.NewReader: %v", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip: %v", err)
	}
	return raw
}

// btMember gunzips the single gzip btMember at off.
func btMember(t testing.TB, blob []byte, off int64) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(blob[off:]))
	if err != nil {
		t.Fatalf("gzip btMember at %d: %v", off, err)
	}
	zr.Multistream(false)
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gzip btMember at %d: %v", off, err)
	}
	return b
}

// btBlobTOC checks the footer and the TOC btMember and returns the TOC and
// its offset.
func btBlobTOC(t testing.TB, blob []byte, res BuildResult) (buildTOC, int64) {
	t.Helper()
	f, err := ParseFooter(blob[len(blob)-FooterSize:])
	if err != nil || f.Size != FooterSize {
		t.Fatalf("ParseFooter = %+v, %v", f, err)
	}
	ents := btReadTar(t, bytes.NewReader(btMember(t, blob, f.TOCOffset)))
	if len(ents) != 1 || ents[0].hdr.Name != TOCTarName {
		t.Fatalf("TOC btMember holds %d entries, want only %s", len(ents), TOCTarName)
	}
	if got := digest.FromBytes(ents[0].data); got != res.TOCDigest {
		t.Errorf("TOCDigest = %s, want %s", res.TOCDigest, got)
	}
	var toc buildTOC
	dec := json.NewDecoder(bytes.NewReader(ents[0].data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&toc); err != nil {
		t.Fatalf("TOC JSON: %v", err)
	}
	if toc.Version != 1 {
		t.Errorf("TOC version = %d, want 1", toc.Version)
	}
	return toc, f.TOCOffset
}

// btCheckBlob checks everything Build promises about one blob built from
// the entries want (already deduplicated and in output order, without
// landmark and TOC) and returns the TOC.
func btCheckBlob(t *testing.T, blob []byte, res BuildResult, want []btEntry) buildTOC {
	t.Helper()
	if res.Size != int64(len(blob)) || res.Digest != digest.FromBytes(blob) {
		t.Errorf("Size, Digest = %d, %s; want %d, %s", res.Size, res.Digest, len(blob), digest.FromBytes(blob))
	}
	raw := btGunzipAll(t, blob)
	if res.UncompressedSize != int64(len(raw)) || res.DiffID != digest.FromBytes(raw) {
		t.Errorf("UncompressedSize, DiffID = %d, %s; want %d, %s", res.UncompressedSize, res.DiffID, len(raw), digest.FromBytes(raw))
	}
	got := btReadTar(t, bytes.NewReader(raw))
	if n := len(got); n < 2 || got[n-1].hdr.Name != TOCTarName {
		t.Fatalf("blob tar does not end in %s", TOCTarName)
	}
	got = got[:len(got)-1]
	var landmarks []string
	for i := 0; i < len(got); i++ {
		if n := got[i].hdr.Name; n == PrefetchLandmark || n == NoPrefetchLandmark {
			if !bytes.Equal(got[i].data, []byte{0x0f}) {
				t.Errorf("%s holds %x, want 0f", n, got[i].data)
			}
			landmarks = append(landmarks, fmt.Sprintf("%s@%d", n, i))
			got = append(got[:i:i], got[i+1:]...)
			i--
		}
	}
	if len(landmarks) != 1 {
		t.Errorf("landmarks = %v, want exactly one", landmarks)
	}
	if len(got) != len(want) {
		t.Fatalf("blob has %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		btCompareEntry(t, got[i], want[i])
	}

	toc, tocOff := btBlobTOC(t, blob, res)
	btCheckTOC(t, blob, toc, tocOff, raw)
	return toc
}

func btCompareEntry(t *testing.T, got, want btEntry) {
	t.Helper()
	g, w := got.hdr, want.hdr
	type fields struct {
		Name, Linkname, Uname, Gname string
		Typeflag                     byte
		Mode, Size, Devmajor         int64
		Devminor                     int64
		UID, GID                     int
		MTime                        int64
		Xattrs                       map[string]string
	}
	xattrs := func(h tar.Header) map[string]string {
		m := map[string]string{}
		for k, v := range h.PAXRecords {
			if strings.HasPrefix(k, "SCHILY.xattr.") {
				m[k] = v
			}
		}
		return m
	}
	gf := fields{g.Name, g.Linkname, g.Uname, g.Gname, g.Typeflag, g.Mode, g.Size, g.Devmajor, g.Devminor, g.Uid, g.Gid, g.ModTime.Unix(), xattrs(g)}
	wf := fields{w.Name, w.Linkname, w.Uname, w.Gname, w.Typeflag, w.Mode, w.Size, w.Devmajor, w.Devminor, w.Uid, w.Gid, w.ModTime.Unix(), xattrs(w)}
	if !reflect.DeepEqual(gf, wf) {
		t.Errorf("entry = %+v, want %+v", gf, wf)
	}
	if !bytes.Equal(got.data, want.data) {
		t.Errorf("%q: content differs (%d bytes, want %d)", w.Name, len(got.data), len(want.data))
	}
}

// btCheckTOC checks every TOC payload entry against the blob: each chunk
// decompresses from its btMember at its inner offset to bytes matching its
// chunkDigest and the uncompressed stream, and files carry digests.
func btCheckTOC(t *testing.T, blob []byte, toc buildTOC, tocOff int64, raw []byte) {
	t.Helper()
	files := map[string][]byte{}
	for _, e := range btReadTar(t, bytes.NewReader(raw)) {
		files[e.hdr.Name] = e.data
	}
	members := map[int64][]byte{}
	var file *buildTOCEntry
	var lastOff int64
	for _, e := range toc.Entries {
		switch e.Type {
		case "reg":
			file = e
			if e.Digest != digest.FromBytes(files[e.Name]).String() {
				t.Errorf("%q: digest %s, want %s", e.Name, e.Digest, digest.FromBytes(files[e.Name]))
			}
			if e.Size == 0 {
				if e.Offset != 0 || e.ChunkDigest != "" {
					t.Errorf("empty %q has offset %d, chunkDigest %q", e.Name, e.Offset, e.ChunkDigest)
				}
				continue
			}
		case "chunk":
			if file == nil || e.Name != file.Name {
				t.Fatalf("chunk entry %q does not follow its file", e.Name)
			}
		default:
			if e.Offset != 0 || e.ChunkDigest != "" || e.Digest != "" {
				t.Errorf("%s %q has payload fields", e.Type, e.Name)
			}
			continue
		}
		if e.Offset <= 0 || e.Offset >= tocOff || e.Offset < lastOff {
			t.Errorf("%q chunk at %d: offset %d out of order or range", e.Name, e.ChunkOffset, e.Offset)
			continue
		}
		lastOff = e.Offset
		m, ok := members[e.Offset]
		if !ok {
			m = btMember(t, blob, e.Offset)
			members[e.Offset] = m
		}
		size := e.ChunkSize
		if size == 0 {
			size = file.Size - e.ChunkOffset
		}
		if e.InnerOffset+size > int64(len(m)) {
			t.Errorf("%q chunk at %d: [%d, +%d) past btMember of %d bytes", e.Name, e.ChunkOffset, e.InnerOffset, size, len(m))
			continue
		}
		got := m[e.InnerOffset : e.InnerOffset+size]
		if e.ChunkDigest != digest.FromBytes(got).String() {
			t.Errorf("%q chunk at %d: chunkDigest mismatch", e.Name, e.ChunkOffset)
		}
		if want := files[e.Name][e.ChunkOffset:]; !bytes.HasPrefix(want, got) {
			t.Errorf("%q chunk at %d: content differs from the tar's", e.Name, e.ChunkOffset)
		}
	}
}

// btDedup returns want as Build orders it without prioritized files: the
// last occurrence of each name, in tar order.
func btDedup(entries []btEntry) []btEntry {
	last := map[string]int{}
	clean := func(n string) string { return strings.TrimPrefix(path.Clean("/"+n), "/") }
	for i, e := range entries {
		last[clean(e.hdr.Name)] = i
	}
	var out []btEntry
	for i, e := range entries {
		if last[clean(e.hdr.Name)] == i {
			out = append(out, e)
		}
	}
	return out
}

// btChunkSizes returns the chunk sizes the TOC gives file name.
func btChunkSizes(toc buildTOC, name string) []int64 {
	var out []int64
	var size int64
	for _, e := range toc.Entries {
		if e.Name != name || (e.Type != "reg" && e.Type != "chunk") {
			continue
		}
		if e.Type == "reg" {
			size = e.Size
		}
		if size == 0 {
			continue
		}
		n := e.ChunkSize
		if n == 0 {
			n = size - e.ChunkOffset
		}
		out = append(out, n)
	}
	return out
}

func btMixedEntries() []btEntry {
	xa := btRegEnt("etc/xattr", []byte("x"))
	xa.hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.foo": "bar", "SCHILY.xattr.security.capability": "\x01\x02\x00"}
	opq := btDirEnt("etc/opaque")
	opq.hdr.PAXRecords = map[string]string{"SCHILY.xattr.trusted.overlay.opaque": "y"}
	suid := btRegEnt("bin/su", []byte("#!/bin/sh\n"))
	suid.hdr.Mode = 0o4755
	return []btEntry{
		btDirEnt("."),
		btDirEnt("bin"),
		suid,
		btRegEnt("bin/empty", nil),
		btSymlinkEnt("bin/sh", "/bin/busybox"),
		btSymlinkEnt("bin/dangling", "../nowhere/at/all"),
		btLinkEnt("bin/su-link", "bin/su"),
		btLinkEnt("bin/empty-link", "bin/empty"),
		btDirEnt("dev"),
		btDevEnt("dev/null", tar.TypeChar, 1, 3),
		btDevEnt("dev/sda", tar.TypeBlock, 8, 0),
		btDevEnt("dev/fifo", tar.TypeFifo, 0, 0),
		btDirEnt("etc"),
		xa,
		opq,
		btDevEnt("etc/.wh.removed", tar.TypeChar, 0, 0),
		btRegEnt("etc/.wh..wh..opq", nil),
		btRegEnt("etc/.wh.gone", nil),
		btRegEnt("etc/big", btRandBytes(1, 3000)),
	}
}

func btDeepEntries(depth int) []btEntry {
	var out []btEntry
	dir := ""
	for i := range depth {
		dir = path.Join(dir, fmt.Sprintf("d%d", i))
		out = append(out, btDirEnt(dir))
	}
	return append(out, btRegEnt(dir+"/leaf", []byte("deep")))
}

func TestBuild(t *testing.T) {
	t.Parallel()
	const cs = 1024
	sizes := []int{0, 1, cs - 1, cs, cs + 1, 3*cs + 5}
	var sized []btEntry
	for i, n := range sizes {
		sized = append(sized, btRegEnt(fmt.Sprintf("f%d", n), btRandBytes(uint64(i), n)))
	}
	var small []btEntry
	for i := range 40 {
		small = append(small, btRegEnt(fmt.Sprintf("small/%02d", i), btRandBytes(uint64(100+i), 50+i*7)))
	}
	small = append(small, btRegEnt("small/large", btRandBytes(7, 5*cs+3)))
	dups := []btEntry{
		btRegEnt("a", []byte("first")),
		btDirEnt("d"),
		btRegEnt("./a", []byte("second, kept")),
		btDirEnt("./d"),
	}
	tests := []struct {
		name string
		in   []btEntry
		opts BuildOptions
		// wantChunks maps file names to their chunk sizes.
		wantChunks map[string][]int64
		wantPacked bool
	}{
		{name: "empty tar", in: nil},
		{name: "mixed types", in: btMixedEntries()},
		{name: "mixed types, best compression", in: btMixedEntries(), opts: BuildOptions{CompressionLevel: 9}},
		{name: "mixed types, huffman only", in: btMixedEntries(), opts: BuildOptions{CompressionLevel: -2}},
		{name: "chunk sizes", in: sized, opts: BuildOptions{ChunkSize: cs}, wantChunks: map[string][]int64{
			"f0": nil, "f1": {1}, "f1023": {1023}, "f1024": {1024}, "f1025": {1024, 1}, "f3077": {1024, 1024, 1024, 5},
		}},
		{name: "default chunk size", in: []btEntry{btRegEnt("big", btRandBytes(3, 4<<20+10))}, wantChunks: map[string][]int64{
			"big": {4 << 20, 10},
		}},
		{name: "packing", in: small, opts: BuildOptions{ChunkSize: cs, MinChunkSize: 2048}, wantPacked: true,
			wantChunks: map[string][]int64{"small/large": {cs, cs, cs, cs, cs, 3}}},
		{name: "packing mixed types", in: btMixedEntries(), opts: BuildOptions{MinChunkSize: 1 << 20}, wantPacked: true},
		{name: "deep tree", in: btDeepEntries(300)},
		{name: "duplicates keep the last", in: dups},
		{name: "long names", in: []btEntry{btRegEnt(strings.Repeat("n", 200)+"/"+strings.Repeat("m", 200), []byte("long"))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			blob, res := btBuildBytes(t, btMakeTar(t, tt.in), tt.opts)
			toc := btCheckBlob(t, blob, res, btDedup(tt.in))
			if toc.Entries[0].Name != NoPrefetchLandmark {
				t.Errorf("first TOC entry = %q, want %s", toc.Entries[0].Name, NoPrefetchLandmark)
			}
			for name, want := range tt.wantChunks {
				if got := btChunkSizes(toc, name); !reflect.DeepEqual(got, want) {
					t.Errorf("chunks of %q = %v, want %v", name, got, want)
				}
			}
			packed := false
			for _, e := range toc.Entries {
				packed = packed || e.InnerOffset > 0
			}
			if packed != tt.wantPacked {
				t.Errorf("some chunk packed = %v, want %v", packed, tt.wantPacked)
			}
		})
	}
}

func TestBuildLandmarkOwnMember(t *testing.T) {
	t.Parallel()
	in := btMixedEntries()
	for _, opts := range []BuildOptions{{}, {MinChunkSize: 1 << 20}, {PrioritizedFiles: []string{"bin/su"}, MinChunkSize: 1 << 20}} {
		blob, res := btBuildBytes(t, btMakeTar(t, in), opts)
		toc, _ := btBlobTOC(t, blob, res)
		for i, e := range toc.Entries {
			if e.Name != PrefetchLandmark && e.Name != NoPrefetchLandmark {
				continue
			}
			if e.InnerOffset != 0 || e.Offset == 0 {
				t.Errorf("%+v: %s at offset %d inner %d, want its own btMember", opts, e.Name, e.Offset, e.InnerOffset)
			}
			for _, p := range toc.Entries[:i] {
				if p.Offset >= e.Offset {
					t.Errorf("%+v: %q at %d is not before %s at %d", opts, p.Name, p.Offset, e.Name, e.Offset)
				}
			}
		}
	}
}

func TestBuildPrioritized(t *testing.T) {
	t.Parallel()
	in := []btEntry{
		btDirEnt("a"),
		btRegEnt("a/1", []byte("a1")),
		btDirEnt("b"),
		btDirEnt("b/c"),
		btRegEnt("b/c/2", []byte("bc2")),
		btRegEnt("top", []byte("top")),
		btLinkEnt("b/link", "a/1"),
		btRegEnt("nodir/3", []byte("3")),
	}
	byName := map[string]btEntry{}
	for _, e := range in {
		byName[strings.TrimSuffix(e.hdr.Name, "/")] = e
	}
	tests := []struct {
		name        string
		prioritized []string
		wantFirst   []string // entries before the landmark
	}{
		{"one file", []string{"top"}, []string{"top"}},
		{"parents first, given order", []string{"b/c/2", "a/1"}, []string{"b", "b/c", "b/c/2", "a", "a/1"}},
		{"hard link brings its target", []string{"b/link"}, []string{"b", "a", "a/1", "b/link"}},
		{"other spellings", []string{"/top", "./b/c/", "top"}, []string{"top", "b", "b/c"}},
		{"implicit parent", []string{"nodir/3"}, []string{"nodir/3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			blob, res := btBuildBytes(t, btMakeTar(t, in), BuildOptions{PrioritizedFiles: tt.prioritized})
			var want []btEntry
			picked := map[string]bool{}
			for _, n := range tt.wantFirst {
				want = append(want, byName[n])
				picked[n] = true
			}
			for _, e := range in {
				if !picked[strings.TrimSuffix(e.hdr.Name, "/")] {
					want = append(want, e)
				}
			}
			toc := btCheckBlob(t, blob, res, want)
			if got := toc.Entries[len(tt.wantFirst)].Name; got != PrefetchLandmark {
				t.Errorf("TOC entry %d = %q, want %s", len(tt.wantFirst), got, PrefetchLandmark)
			}
		})
	}
}

// btRawTar builds a tar whose headers tar.Writer would refuse to write.
func btRawTar(t *testing.T, blocks ...[]byte) []byte {
	t.Helper()
	var out []byte
	for _, b := range blocks {
		out = append(out, b...)
		if r := len(b) % 512; r != 0 {
			out = append(out, make([]byte, 512-r)...)
		}
	}
	return append(out, make([]byte, 1024)...)
}

// btRawHeader returns a ustar header block with the given fields.
func btRawHeader(name string, typ byte, size int64, link string) []byte {
	b := make([]byte, 512)
	copy(b, name)
	copy(b[100:], "0000644\x00")
	copy(b[108:], "0000000\x00")
	copy(b[116:], "0000000\x00")
	copy(b[124:], fmt.Sprintf("%011o\x00", size))
	copy(b[136:], "00000000000\x00")
	b[156] = typ
	copy(b[157:], link)
	copy(b[257:], "ustar\x0000")
	copy(b[148:], "        ")
	var sum int64
	for _, c := range b {
		sum += int64(c)
	}
	copy(b[148:], fmt.Sprintf("%06o\x00 ", sum))
	return b
}

func TestBuildErrors(t *testing.T) {
	t.Parallel()
	good := btMakeTar(t, btMixedEntries())
	// tar.Writer drops GNU.sparse records, so write a PAX 1.0 sparse file
	// (map: one region of 3 bytes at 0) by hand.
	var pax []byte
	for _, kv := range []string{"GNU.sparse.major=1", "GNU.sparse.minor=0", "GNU.sparse.name=s", "GNU.sparse.realsize=3"} {
		n := len(kv) + 2 // " " and "\n", then the length's own digits
		n += len(fmt.Sprint(n + len(fmt.Sprint(n))))
		pax = fmt.Appendf(pax, "%d %s\n", n, kv)
	}
	sparseMap := append([]byte("1\n0\n3\n"), make([]byte, 512-6)...)
	sparse := btRawTar(t, btRawHeader("PaxHeaders/s", tar.TypeXHeader, int64(len(pax)), ""), pax,
		btRawHeader("GNUSparseFile.0/s", tar.TypeReg, 512+3, ""), append(sparseMap, "abc"...))
	global := btMakeTar(t, []btEntry{{hdr: tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "g", PAXRecords: map[string]string{"comment": "x"}}}})
	tests := []struct {
		name    string
		in      []byte
		size    int64 // -1: len(in)
		opts    BuildOptions
		wantErr error  // nil: any error
		wantMsg string // substring of the error
	}{
		{name: "dotdot name", in: btRawTar(t, btRawHeader("a/../../etc/passwd", tar.TypeReg, 0, "")), wantErr: errBadTar, wantMsg: `".."`},
		{name: "dotdot inside", in: btRawTar(t, btRawHeader("a/../b", tar.TypeReg, 0, "")), wantErr: errBadTar, wantMsg: `".."`},
		{name: "dotdot link", in: btRawTar(t, btRawHeader("l", tar.TypeLink, 0, "../x")), wantErr: errBadTar, wantMsg: `".."`},
		{name: "missing prioritized", in: good, opts: BuildOptions{PrioritizedFiles: []string{"bin/su", "no/such/file"}}, wantMsg: `"no/such/file"`},
		{name: "link to later entry", in: btRawTar(t, btRawHeader("l", tar.TypeLink, 0, "f"), btRawHeader("f", tar.TypeReg, 0, "")), wantErr: errBadTar, wantMsg: "not an earlier entry"},
		{name: "link to missing", in: btRawTar(t, btRawHeader("l", tar.TypeLink, 0, "f")), wantErr: errBadTar, wantMsg: "not an earlier entry"},
		{name: "link to dir", in: btRawTar(t, btRawHeader("d/", tar.TypeDir, 0, ""), btRawHeader("l", tar.TypeLink, 0, "d")), wantErr: errBadTar, wantMsg: "directory"},
		{name: "link to root", in: btRawTar(t, btRawHeader("l", tar.TypeLink, 0, "./")), wantErr: errBadTar, wantMsg: "root"},
		{name: "parent is a file", in: btRawTar(t, btRawHeader("f", tar.TypeReg, 0, ""), btRawHeader("f/x", tar.TypeReg, 0, "")), wantErr: errBadTar, wantMsg: "not a directory"},
		{name: "grandparent becomes a file", in: btRawTar(t, btRawHeader("a/", tar.TypeDir, 0, ""), btRawHeader("a/b/c", tar.TypeReg, 0, ""), btRawHeader("a", tar.TypeReg, 0, "")), wantErr: errBadTar, wantMsg: "not a directory"},
		{name: "parent is a symlink", in: btRawTar(t, btRawHeader("s", tar.TypeSymlink, 0, "/etc"), btRawHeader("s/passwd", tar.TypeReg, 0, "")), wantErr: errBadTar, wantMsg: "not a directory"},
		{name: "root is a file", in: btRawTar(t, btRawHeader("./", tar.TypeReg, 0, "")), wantErr: errBadTar, wantMsg: "root"},
		{name: "truncated payload", in: good, size: int64(len(good)) - 2048, wantErr: errBadTar},
		{name: "payload past the end", in: btRawTar(t, btRawHeader("f", tar.TypeReg, 1<<40, "")), wantErr: errBadTar},
		{name: "garbage", in: bytes.Repeat([]byte("garbage!"), 200), wantErr: errBadTar},
		{name: "sparse", in: sparse, wantErr: errBadTar, wantMsg: "sparse"},
		{name: "old GNU sparse", in: btRawTar(t, btRawHeader("s", tar.TypeGNUSparse, 0, "")), wantErr: errBadTar},
		{name: "global header", in: global, wantErr: errBadTar, wantMsg: "unsupported type"},
		{name: "contiguous file type", in: btRawTar(t, btRawHeader("c", tar.TypeCont, 0, "")), wantErr: errBadTar, wantMsg: "unsupported type"},
		{name: "non-UTF-8 name", in: btRawTar(t, btRawHeader("caf\xe9", tar.TypeReg, 0, "")), wantErr: errBadTar, wantMsg: "UTF-8"},
		{name: "non-UTF-8 symlink target", in: btRawTar(t, btRawHeader("s", tar.TypeSymlink, 0, "\xff")), wantErr: errBadTar, wantMsg: "UTF-8"},
		{name: "negative chunk size", in: good, opts: BuildOptions{ChunkSize: -1}, wantMsg: "chunk size"},
		{name: "negative min chunk size", in: good, opts: BuildOptions{MinChunkSize: -1}, wantMsg: "chunk size"},
		{name: "bad level", in: good, opts: BuildOptions{CompressionLevel: 42}, wantMsg: "level"},
		{name: "negative tar size", in: good, size: -5, wantMsg: "size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			size := tt.size
			if size == 0 {
				size = int64(len(tt.in))
			}
			_, err := Build(context.Background(), io.Discard, bytes.NewReader(tt.in), size, tt.opts)
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Build() = %v, want error %v containing %q", err, tt.wantErr, tt.wantMsg)
			}
		})
	}
}

func TestBuildDropsTOCAndLandmarks(t *testing.T) {
	t.Parallel()
	// Building from the uncompressed content of a built blob must not
	// duplicate the TOC or the landmark.
	in := btMakeTar(t, btMixedEntries())
	blob, _ := btBuildBytes(t, in, BuildOptions{})
	blob2, res2 := btBuildBytes(t, btGunzipAll(t, blob), BuildOptions{})
	btCheckBlob(t, blob2, res2, btMixedEntries())
}

// btErrWriter fails after n bytes.
type btErrWriter struct{ n int }

var errBTWrite = errors.New("disk full")

func (w *btErrWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		n := w.n
		w.n = 0
		return n, errBTWrite
	}
	w.n -= len(p)
	return len(p), nil
}

func TestBuildWriteError(t *testing.T) {
	t.Parallel()
	in := btMakeTar(t, []btEntry{btRegEnt("big", btRandBytes(1, 1<<20))})
	for _, n := range []int{0, 100, 300 << 10} {
		_, err := Build(context.Background(), &btErrWriter{n: n}, bytes.NewReader(in), int64(len(in)), BuildOptions{CompressionLevel: gzip.BestSpeed})
		if !errors.Is(err, errBTWrite) {
			t.Errorf("Build(writer failing after %d) = %v, want %v", n, err, errBTWrite)
		}
	}
}

// btCancelReader cancels a context once it has served n bytes.
type btCancelReader struct {
	r      io.ReaderAt
	n      int64
	cancel context.CancelFunc
}

func (c *btCancelReader) ReadAt(p []byte, off int64) (int, error) {
	if c.n -= int64(len(p)); c.n < 0 {
		c.cancel()
	}
	return c.r.ReadAt(p, off)
}

func TestBuildCancel(t *testing.T) {
	t.Parallel()
	in := btMakeTar(t, []btEntry{btRegEnt("a", btRandBytes(1, 512<<10)), btRegEnt("b", btRandBytes(2, 512<<10))})
	for _, after := range []int64{0, 4096, 512 << 10} {
		ctx, cancel := context.WithCancel(context.Background())
		if after == 0 {
			cancel()
		}
		r := &btCancelReader{r: bytes.NewReader(in), n: after, cancel: cancel}
		_, err := Build(ctx, io.Discard, r, int64(len(in)), BuildOptions{CompressionLevel: gzip.BestSpeed})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Build(cancelled after %d bytes) = %v, want %v", after, err, context.Canceled)
		}
	}
}

func TestBuildDeterministic(t *testing.T) {
	t.Parallel()
	in := btMakeTar(t, btMixedEntries())
	for _, opts := range []BuildOptions{{}, {MinChunkSize: 4096, PrioritizedFiles: []string{"etc/big"}}} {
		a, ra := btBuildBytes(t, in, opts)
		b, rb := btBuildBytes(t, in, opts)
		if !bytes.Equal(a, b) || ra != rb {
			t.Errorf("%+v: two builds differ", opts)
		}
	}
}

func TestBuildTOCNames(t *testing.T) {
	t.Parallel()
	// User and group names are written where they change for an ID, as
	// the reference writer does; readers carry them forward.
	a, b, c := btRegEnt("a", nil), btRegEnt("b", nil), btRegEnt("c", nil)
	c.hdr.Uname = "other"
	blob, res := btBuildBytes(t, btMakeTar(t, []btEntry{a, b, c}), BuildOptions{})
	toc, _ := btBlobTOC(t, blob, res)
	var got []string
	for _, e := range toc.Entries {
		got = append(got, e.Name+":"+e.Uname+":"+e.Gname+":"+e.ModTime3339)
	}
	want := []string{NoPrefetchLandmark + ":::", "a:user:group:2024-05-06T07:08:09Z", "b:::2024-05-06T07:08:09Z", "c:other::2024-05-06T07:08:09Z"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("TOC names = %q, want %q", got, want)
	}
}

func TestBuildFooter(t *testing.T) {
	t.Parallel()
	blob, _ := btBuildBytes(t, btMakeTar(t, nil), BuildOptions{})
	tail := blob[len(blob)-FooterSize:]
	f, err := ParseFooter(tail)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x1a\x00SG\x16\x00%016xSTARGZ\x01\x00\x00\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00", f.TOCOffset)
	if string(tail) != want {
		t.Errorf("footer = %q, want %q", tail, want)
	}
}

// TestBuildSystemTar unpacks a blob with the system's GNU tar, as a
// runtime that ignores eStargz would.
func TestBuildSystemTar(t *testing.T) {
	t.Parallel()
	tarBin, err := exec.LookPath("tar")
	if err != nil {
		t.Skip("no tar binary")
	}
	in := btMixedEntries()
	blob, _ := btBuildBytes(t, btMakeTar(t, in), BuildOptions{MinChunkSize: 1000, PrioritizedFiles: []string{"etc/big"}})
	dir := t.TempDir()
	blobPath := filepath.Join(dir, "blob.tar.gz")
	if err := os.WriteFile(blobPath, blob, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tarBin, "-tzf", blobPath).CombinedOutput()
	if err != nil {
		t.Fatalf("tar -tzf: %v\n%s", err, out)
	}
	var want []string
	for _, e := range in {
		if e.hdr.Name == "etc/" || e.hdr.Name == "etc/big" || e.hdr.Name == "./" {
			continue
		}
		want = append(want, e.hdr.Name)
	}
	want = append([]string{"./", "etc/", "etc/big", PrefetchLandmark}, want...)
	want = append(want, TOCTarName)
	if got := strings.Fields(string(out)); !reflect.DeepEqual(got, want) {
		t.Errorf("tar -tzf lists %q, want %q", got, want)
	}
	// Unpacking checks contents as far as tar can (no devices unprivileged,
	// so only the regular files).
	x := filepath.Join(dir, "x")
	if err := os.Mkdir(x, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tarBin, "-xzf", blobPath, "-C", x, "etc/big", "bin/su").CombinedOutput(); err != nil {
		t.Fatalf("tar -xzf: %v\n%s", err, out)
	}
	for _, e := range in {
		if n := e.hdr.Name; n == "etc/big" || n == "bin/su" {
			got, err := os.ReadFile(filepath.Join(x, n))
			if err != nil || !bytes.Equal(got, e.data) {
				t.Errorf("unpacked %s: %d bytes, %v; want the %d input bytes", n, len(got), err, len(e.data))
			}
		}
	}
}

// btSynthTar is an io.ReaderAt over a tar of one regular file of n bytes
// whose content repeats a random block, so the input costs no memory.
type btSynthTar struct {
	head  []byte // the header block(s)
	block []byte // the payload pattern
	n     int64  // payload size
	size  int64  // whole tar: header, payload, padding, end-of-archive
}

func newBTSynthTar(t *testing.T, n int64) *btSynthTar {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "big", Size: n, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	head := buf.Bytes()
	return &btSynthTar{head: head, block: btRandBytes(5, 40<<10), n: n, size: int64(len(head)) + (n+511)/512*512 + 1024}
}

func (s *btSynthTar) ReadAt(p []byte, off int64) (int, error) {
	done := 0
	for done < len(p) {
		o := off + int64(done)
		q := p[done:]
		switch h := int64(len(s.head)); {
		case o >= s.size:
			return done, io.EOF
		case o < h:
			done += copy(q, s.head[o:])
		case o-h < s.n:
			i := (o - h) % int64(len(s.block))
			done += copy(q[:min(int64(len(q)), s.n-(o-h))], s.block[i:])
		default:
			done += copy(q[:min(int64(len(q)), s.size-o)], make([]byte, 512))
		}
	}
	return done, nil
}

// TestBuildStreams checks that Build's memory does not grow with the
// layer: it must stream payloads, not hold them. Not parallel, so that
// the allocation count is Build's own.
func TestBuildStreams(t *testing.T) {
	const n = 24 << 20
	in := newBTSynthTar(t, n)
	goroutines := runtime.NumGoroutine()
	defer func() {
		// The compression goroutines must be gone once Build returns
		// (give exiting ones a moment, as goleak does).
		for i := 0; runtime.NumGoroutine() > goroutines && i < 100; i++ {
			time.Sleep(10 * time.Millisecond)
		}
		if g := runtime.NumGoroutine(); g > goroutines {
			t.Errorf("%d goroutines after Build, %d before", g, goroutines)
		}
	}()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res, err := Build(context.Background(), io.Discard, in, in.size, BuildOptions{ChunkSize: 256 << 10, CompressionLevel: gzip.HuffmanOnly})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if res.UncompressedSize < n {
		t.Fatalf("UncompressedSize = %d, want more than %d", res.UncompressedSize, n)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("Build of a %d MiB layer allocated %d KiB", n>>20, alloc>>10)
	if alloc > 8<<20 {
		t.Errorf("Build of a %d MiB layer allocated %d MiB, want at most 8", n>>20, alloc>>20)
	}
}
