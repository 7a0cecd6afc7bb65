// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"archive/tar"
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store/index"
)

// TestBuildRoundTrip opens what Build writes with this package's reader:
// every chunk DecodeChunk decodes equals the input, and the metadata and
// landmarks come through.
func TestBuildRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tt := range btInteropCases() {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			blob, res := btBuildBytes(t, btMakeTar(t, tt.in), tt.opts)
			b, err := Open(context.Background(), bytes.NewReader(blob), int64(len(blob)), OpenOptions{TOCDigest: res.TOCDigest})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			if b.TOCDigest != res.TOCDigest || b.FooterSize != FooterSize {
				t.Errorf("Open = TOC digest %s, footer %d; want %s, %d", b.TOCDigest, b.FooterSize, res.TOCDigest, FooterSize)
			}
			toc, tocOff := btBlobTOC(t, blob, res)
			if b.TOCOffset != tocOff {
				t.Errorf("TOCOffset = %d, want %d", b.TOCOffset, tocOff)
			}
			btCheckLandmark(t, b, toc, len(tt.opts.PrioritizedFiles) > 0)
			for _, in := range btDedup(tt.in) {
				btCheckIndexEntry(t, blob, b.Index, in)
			}
		})
	}
}

func btCheckLandmark(t *testing.T, b *Blob, toc buildTOC, prioritized bool) {
	t.Helper()
	var landmarkOff int64
	for _, e := range toc.Entries {
		if e.Name == PrefetchLandmark {
			landmarkOff = e.Offset
		}
	}
	if prioritized {
		if b.PrefetchEnd != landmarkOff || b.PrefetchEnd == 0 || b.NoPrefetch {
			t.Errorf("PrefetchEnd, NoPrefetch = %d, %v; want %d, false", b.PrefetchEnd, b.NoPrefetch, landmarkOff)
		}
		return
	}
	if b.PrefetchEnd != 0 || !b.NoPrefetch {
		t.Errorf("PrefetchEnd, NoPrefetch = %d, %v; want 0, true", b.PrefetchEnd, b.NoPrefetch)
	}
}

// btCheckIndexEntry compares the index entry of one input entry with it,
// decoding every chunk of a regular file.
func btCheckIndexEntry(t *testing.T, blob []byte, ix *index.Index, in btEntry) {
	t.Helper()
	h := in.hdr
	e, ok := ix.Lookup(h.Name)
	if !ok {
		t.Fatalf("Lookup(%q): not found", h.Name)
	}
	if h.Typeflag == tar.TypeLink {
		target, ok := ix.Lookup(h.Linkname)
		if !ok || target != e {
			t.Errorf("hard link %q does not resolve to %q", h.Name, h.Linkname)
		}
		return
	}
	wantType := map[byte]index.Type{tar.TypeDir: index.TypeDir, tar.TypeReg: index.TypeReg, tar.TypeSymlink: index.TypeSymlink,
		tar.TypeChar: index.TypeChar, tar.TypeBlock: index.TypeBlock, tar.TypeFifo: index.TypeFifo}[h.Typeflag]
	xattrs := map[string][]byte{}
	for k, v := range h.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok {
			xattrs[name] = []byte(v)
		}
	}
	type meta struct {
		Type                index.Type
		Mode                uint32
		UID, GID            int
		UserName, GroupName string
		Size, MTime         int64
		LinkName            string
		DevMajor, DevMinor  uint32
		Xattrs              map[string][]byte
	}
	got := meta{e.Type, e.Mode, e.UID, e.GID, e.UserName, e.GroupName, e.Size, e.ModTime.Unix(), e.LinkName, e.DevMajor, e.DevMinor, e.Xattrs}
	want := meta{wantType, uint32(h.Mode), h.Uid, h.Gid, h.Uname, h.Gname, int64(len(in.data)), h.ModTime.Unix(), h.Linkname,
		uint32(h.Devmajor), uint32(h.Devminor), xattrs}
	if len(got.Xattrs) == 0 {
		got.Xattrs = map[string][]byte{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%q: index entry %+v, want %+v", h.Name, got, want)
	}
	if h.Typeflag != tar.TypeReg {
		return
	}
	if e.Digest != "" && e.Digest != digest.FromBytes(in.data) {
		t.Errorf("%q: digest %s, want %s", h.Name, e.Digest, digest.FromBytes(in.data))
	}
	var content []byte
	for _, c := range e.Chunks {
		dst := make([]byte, c.Size)
		if err := DecodeChunk(dst, blob[c.CompressedOffset:c.CompressedEnd], c); err != nil {
			t.Fatalf("%q: DecodeChunk(%+v): %v", h.Name, c, err)
		}
		content = append(content, dst...)
	}
	if !bytes.Equal(content, in.data) {
		t.Errorf("%q: decoded %d bytes, want the %d input bytes", h.Name, len(content), len(in.data))
	}
}
