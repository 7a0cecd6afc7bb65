// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"archive/tar"
	"bytes"
	"context"
	"testing"

	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
)

// Size limits of FuzzBuild. The fuzzer minimizes every input that finds
// new coverage, with one Build per attempt; a large input then costs tens
// of seconds before the next one runs (a 14 KiB tar seed kept it at 8
// executions in 20 s).
const (
	btFuzzMaxRaw     = 4 << 10  // a raw tar input
	btFuzzMaxEntries = 24       // entries a described tar may have
	btFuzzMaxPayload = 64 << 10 // bytes of payload of a described tar
)

// btFuzzNames is the alphabet of described names: few enough letters that
// names collide, with the separators that make parents, "." and "..".
const btFuzzNames = "ab/."

// btFuzzTar turns data into a tar, a few bytes per entry: [op, name
// length, arg, name bytes...]. op picks the type (dir, reg, symlink, hard
// link, char, fifo, reg with xattrs, large reg); arg picks the payload
// size and byte, a link's target among the earlier names, the owner and
// the mode bits. Mutations of these bytes change the tree, not a header
// checksum, so the fuzzer explores what Build does with names, links,
// duplicates and sizes.
func btFuzzTar(data []byte) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	var names []string
	payload := 0
	for len(data) >= 3 && len(names) < btFuzzMaxEntries {
		op, n, arg := data[0], int(data[1]%12), data[2]
		data = data[3:]
		name := make([]byte, 0, n)
		for _, c := range data[:min(n, len(data))] {
			name = append(name, btFuzzNames[c%byte(len(btFuzzNames))])
		}
		data = data[min(n, len(data)):]
		h := &tar.Header{Name: string(name), Mode: 0o644 | int64(arg&7)<<9, Uid: int(arg), Gid: int(arg >> 4), ModTime: btMTime}
		var body []byte
		target := func() string {
			if len(names) == 0 {
				return string(name)
			}
			return names[int(arg)%len(names)]
		}
		switch op % 8 {
		case 0:
			h.Typeflag, h.Mode = tar.TypeDir, 0o755
		case 1, 6, 7:
			size := int(arg) % 64
			if op%8 == 7 {
				size = int(arg) * 257 // up to 64 KiB, several chunks
			}
			size = min(size, btFuzzMaxPayload-payload)
			payload += size
			h.Typeflag, h.Size = tar.TypeReg, int64(size)
			body = bytes.Repeat([]byte{arg, op, byte(len(names))}, size/3+1)[:size]
			if op%8 == 6 {
				h.PAXRecords = map[string]string{"SCHILY.xattr.user." + string(name): string(body[:min(size, 8)])}
			}
		case 2:
			h.Typeflag, h.Linkname = tar.TypeSymlink, target()
		case 3:
			h.Typeflag, h.Linkname = tar.TypeLink, target()
		case 4:
			h.Typeflag, h.Devmajor, h.Devminor = tar.TypeChar, int64(arg), int64(op)
		case 5:
			h.Typeflag = tar.TypeFifo
		}
		if tw.WriteHeader(h) != nil {
			continue
		}
		_, _ = tw.Write(body)
		names = append(names, h.Name)
	}
	_ = tw.Close()
	return buf.Bytes()
}

// btFuzzOp is one entry of a described tar, for seeds.
type btFuzzOp struct {
	op, arg byte
	name    string // in btFuzzNames
}

// btFuzzDesc encodes entries as btFuzzTar reads them.
func btFuzzDesc(ops ...btFuzzOp) []byte {
	var b []byte
	for _, o := range ops {
		b = append(b, o.op, byte(len(o.name)), o.arg)
		for _, c := range []byte(o.name) {
			b = append(b, byte(bytes.IndexByte([]byte(btFuzzNames), c)))
		}
	}
	return b
}

// btFuzzMixed describes a tree of every type: a directory, files, links
// of both kinds, devices, xattrs and a file of several chunks.
func btFuzzMixed() []byte {
	return btFuzzDesc(btFuzzOp{0, 0, "a"}, btFuzzOp{1, 9, "a/b"}, btFuzzOp{2, 1, "a/a"}, btFuzzOp{3, 1, "b"},
		btFuzzOp{4, 3, "ab"}, btFuzzOp{5, 0, "ba"}, btFuzzOp{6, 20, "bb"}, btFuzzOp{7, 200, "a/bb"})
}

// FuzzBuild feeds input tars to Build: described ones (btFuzzTar), or,
// with raw set, arbitrary bytes of at most btFuzzMaxRaw. Build must not
// panic, and whatever it accepts must gunzip to its DiffID and open with
// this package's reader, with every chunk decoding.
func FuzzBuild(f *testing.F) {
	// Described tars: a mixed tree, a deep one, duplicates and links.
	f.Add(btFuzzMixed(), uint16(0), uint16(0), false, false)
	f.Add(btFuzzMixed(), uint16(100), uint16(300), true, false)
	deep := btFuzzDesc(btFuzzOp{0, 0, "a"}, btFuzzOp{0, 0, "a/a"}, btFuzzOp{0, 0, "a/a/a"}, btFuzzOp{1, 5, "a/a/a/b"}, btFuzzOp{3, 3, "b"})
	f.Add(deep, uint16(7), uint16(40), false, false)
	dups := btFuzzDesc(btFuzzOp{1, 9, "a"}, btFuzzOp{1, 8, "./a"}, btFuzzOp{3, 0, "l"}, btFuzzOp{7, 255, "b"}, btFuzzOp{3, 3, "a"})
	f.Add(dups, uint16(3), uint16(0), false, false)
	f.Add(btFuzzDesc(btFuzzOp{0, 0, ".."}, btFuzzOp{1, 1, "../a"}, btFuzzOp{1, 1, "."}, btFuzzOp{2, 0, "/a"}), uint16(0), uint16(0), true, false)
	// Raw tars, small: mixed, and a file given twice with a link to it.
	f.Add(btMakeTar(f, []btEntry{btDirEnt("d"), btRegEnt("d/f", []byte("x")), btSymlinkEnt("s", "d/f")}), uint16(2), uint16(1), false, true)
	f.Add(btMakeTar(f, []btEntry{btRegEnt("a", []byte("first")), btRegEnt("./a", []byte("second")), btLinkEnt("l", "a")}), uint16(2), uint16(1), false, true)
	f.Add([]byte{}, uint16(0), uint16(0), false, true)
	f.Fuzz(func(t *testing.T, data []byte, chunk, minChunk uint16, prioritize, raw bool) {
		in := data
		if !raw {
			in = btFuzzTar(data)
		} else if len(data) > btFuzzMaxRaw {
			return
		}
		opts := BuildOptions{MinChunkSize: int(minChunk) % 8192, CompressionLevel: gzip.BestSpeed}
		if chunk != 0 {
			// Tiny chunks make a member per few bytes, which is slow
			// under coverage instrumentation and finds nothing new.
			opts.ChunkSize = 64 + int(chunk)%4096
		}
		if prioritize {
			// Prioritize the first entry, whatever it is.
			if h, err := tar.NewReader(bytes.NewReader(in)).Next(); err == nil {
				opts.PrioritizedFiles = []string{h.Name}
			}
		}
		var out bytes.Buffer
		res, err := Build(context.Background(), &out, bytes.NewReader(in), int64(len(in)), opts)
		if err != nil {
			return
		}
		blob := out.Bytes()
		if raw := btGunzipAll(t, blob); digest.FromBytes(raw) != res.DiffID {
			t.Fatalf("DiffID %s, but the blob gunzips to %s", res.DiffID, digest.FromBytes(raw))
		}
		b, err := Open(context.Background(), bytes.NewReader(blob), int64(len(blob)), OpenOptions{TOCDigest: res.TOCDigest})
		if err != nil {
			t.Fatalf("Open of a built blob: %v", err)
		}
		for _, e := range b.Index.Entries() {
			for _, c := range e.Chunks {
				if err := DecodeChunk(make([]byte, c.Size), blob[c.CompressedOffset:c.CompressedEnd], c); err != nil {
					t.Fatalf("%q: %v", e.Name, err)
				}
			}
		}
	})
}

// TestFuzzTarDescribes checks that btFuzzTar makes the trees its seeds
// mean to, so that FuzzBuild explores Build rather than tar errors.
func TestFuzzTarDescribes(t *testing.T) {
	in := btFuzzTar(btFuzzMixed())
	got := btReadTar(t, bytes.NewReader(in))
	var types []byte
	for _, e := range got {
		types = append(types, e.hdr.Typeflag)
	}
	want := []byte{tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeFifo, tar.TypeReg, tar.TypeReg}
	if !bytes.Equal(types, want) {
		t.Fatalf("types %q, want %q", types, want)
	}
	if last := got[len(got)-1]; last.hdr.Size != 200*257 || len(last.data) != 200*257 {
		t.Errorf("large file of %d bytes, want %d", last.hdr.Size, 200*257)
	}
	var out bytes.Buffer
	if _, err := Build(t.Context(), &out, bytes.NewReader(in), int64(len(in)), BuildOptions{}); err != nil {
		t.Fatalf("Build of the described tar: %v", err)
	}
}
