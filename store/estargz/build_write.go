// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
)

// buildWriter writes the blob: a sequence of gzip members whose
// concatenated content is one tar stream. It follows the reference
// writer's layout (estargz.go appendTar): tar headers and padding go into
// whichever member is open, and each payload chunk starts a new member
// (unless packed), so that a chunk is decompressible on its own.
type buildWriter struct {
	ctx  context.Context
	src  io.ReaderAt
	opts BuildOptions

	bw *bufio.Writer
	cw *buildCountWriter // compressed bytes: size and blob digest

	gz   *gzip.Writer // reused across members with Reset
	open bool         // a member is open in gz
	// memberOff and memberStart are where the open member starts: its
	// blob offset and the uncompressed stream position.
	memberOff, memberStart int64

	diff hash.Hash // DiffID over the uncompressed stream
	un   int64     // uncompressed bytes written
	tw   *tar.Writer

	toc                  buildTOC
	lastUname, lastGname map[int]string
	buf                  []byte
}

// buildCountWriter counts and hashes what it passes on.
type buildCountWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (c *buildCountWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

// buildStreamWriter is the uncompressed side: it feeds the open member
// and the DiffID.
type buildStreamWriter struct{ b *buildWriter }

func (s buildStreamWriter) Write(p []byte) (int, error) {
	b := s.b
	if !b.open {
		if err := b.openMember(); err != nil {
			return 0, err
		}
	}
	n, err := b.gz.Write(p)
	b.diff.Write(p[:n])
	b.un += int64(n)
	return n, err
}

func newBuildWriter(ctx context.Context, w io.Writer, src io.ReaderAt, opts BuildOptions) (*buildWriter, error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	cw := &buildCountWriter{w: bw, h: sha256.New()}
	level := opts.CompressionLevel
	if level == 0 {
		level = gzip.DefaultCompression
	}
	gz, err := gzip.NewWriterLevel(cw, level)
	if err != nil {
		return nil, fmt.Errorf("estargz: build: compression level %d: %w", opts.CompressionLevel, err)
	}
	b := &buildWriter{
		ctx:       ctx,
		src:       src,
		opts:      opts,
		bw:        bw,
		cw:        cw,
		gz:        gz,
		diff:      sha256.New(),
		toc:       buildTOC{Version: 1},
		lastUname: make(map[int]string),
		lastGname: make(map[int]string),
		buf:       make([]byte, 128<<10),
	}
	b.tw = tar.NewWriter(buildStreamWriter{b})
	return b, nil
}

func (b *buildWriter) openMember() error {
	b.gz.Reset(b.cw)
	b.open = true
	b.memberOff, b.memberStart = b.cw.n, b.un
	return nil
}

func (b *buildWriter) closeMember() error {
	if !b.open {
		return nil
	}
	b.open = false
	return b.gz.Close()
}

// nameIfChanged returns name unless it is what *m already maps id to: the
// reference writes a user or group name only where it changes for an ID,
// and readers carry it forward.
func nameIfChanged(m map[int]string, id int, name string) string {
	if name == "" || m[id] == name {
		return ""
	}
	m[id] = name
	return name
}

// tocEntry returns the TOC entry for a header, without payload fields.
func (b *buildWriter) tocEntry(h *tar.Header) *buildTOCEntry {
	ent := &buildTOCEntry{
		Name:        h.Name,
		Mode:        h.Mode,
		UID:         h.Uid,
		GID:         h.Gid,
		Uname:       nameIfChanged(b.lastUname, h.Uid, h.Uname),
		Gname:       nameIfChanged(b.lastGname, h.Gid, h.Gname),
		ModTime3339: buildModTime(h.ModTime),
	}
	const xattrPrefix = "SCHILY.xattr."
	for k, v := range h.PAXRecords {
		if strings.HasPrefix(k, xattrPrefix) {
			if ent.Xattrs == nil {
				ent.Xattrs = make(map[string][]byte)
			}
			ent.Xattrs[k[len(xattrPrefix):]] = []byte(v)
		}
	}
	switch h.Typeflag {
	case tar.TypeLink:
		ent.Type, ent.LinkName = "hardlink", h.Linkname
	case tar.TypeSymlink:
		ent.Type, ent.LinkName = "symlink", h.Linkname
	case tar.TypeDir:
		ent.Type = "dir"
	case tar.TypeReg:
		ent.Type, ent.Size = "reg", h.Size
	case tar.TypeChar:
		ent.Type, ent.DevMajor, ent.DevMinor = "char", int(h.Devmajor), int(h.Devminor)
	case tar.TypeBlock:
		ent.Type, ent.DevMajor, ent.DevMinor = "block", int(h.Devmajor), int(h.Devminor)
	case tar.TypeFifo:
		ent.Type = "fifo"
	}
	return ent
}

// writeEntry writes one tar entry and records its TOC entries.
func (b *buildWriter) writeEntry(e *buildEntry) error {
	if err := b.ctx.Err(); err != nil {
		return err
	}
	ent := b.tocEntry(e.hdr)
	if err := b.tw.WriteHeader(e.hdr); err != nil {
		return fmt.Errorf("estargz: build: %w: header of %q: %v", errBadTar, e.hdr.Name, err)
	}
	if e.hdr.Typeflag != tar.TypeReg {
		b.toc.Entries = append(b.toc.Entries, ent)
		return b.tw.Flush()
	}
	file := ent
	fileHash := sha256.New()
	size := e.hdr.Size
	if size == 0 {
		b.toc.Entries = append(b.toc.Entries, ent)
	}
	for written := int64(0); written < size; {
		n := int64(b.opts.ChunkSize)
		if remain := size - written; remain < n {
			n = remain // the last chunk: chunkSize 0 means "to the end"
		} else {
			ent.ChunkSize = n
		}
		if err := b.startChunk(e, ent); err != nil {
			return err
		}
		ent.ChunkOffset = written
		chunkHash := sha256.New()
		if err := b.copyChunk(e, written, n, io.MultiWriter(chunkHash, fileHash)); err != nil {
			return err
		}
		ent.ChunkDigest = digest.NewDigest(digest.SHA256, chunkHash).String()
		b.toc.Entries = append(b.toc.Entries, ent)
		written += n
		ent = &buildTOCEntry{Name: e.hdr.Name, Type: "chunk"}
	}
	file.Digest = digest.NewDigest(digest.SHA256, fileHash).String()
	return b.tw.Flush() // the padding goes with the file's last chunk
}

// startChunk places the next chunk: at the start of a new member, or
// packed into the open one at an inner offset.
func (b *buildWriter) startChunk(e *buildEntry, ent *buildTOCEntry) error {
	// A payload never shares member 0: offset 0 reads as "no payload" in
	// the TOC (it is omitted from the JSON).
	pack := b.opts.MinChunkSize > 0 && !e.ownMember && b.open && b.memberOff > 0 &&
		b.un-b.memberStart < int64(b.opts.MinChunkSize)
	if pack {
		ent.Offset, ent.InnerOffset = b.memberOff, b.un-b.memberStart
		return nil
	}
	if err := b.closeMember(); err != nil {
		return err
	}
	if err := b.openMember(); err != nil {
		return err
	}
	ent.Offset = b.memberOff
	return nil
}

// copyChunk copies payload bytes [off, off+n) of e into the tar stream
// and h.
func (b *buildWriter) copyChunk(e *buildEntry, off, n int64, h io.Writer) error {
	var r io.Reader
	if e.data != nil {
		r = bytes.NewReader(e.data[off : off+n])
	} else {
		r = io.NewSectionReader(b.src, e.off+off, n)
	}
	for n > 0 {
		if err := b.ctx.Err(); err != nil {
			return err
		}
		p := b.buf[:min(int64(len(b.buf)), n)]
		if _, err := io.ReadFull(r, p); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("estargz: build: reading %q: %w", e.hdr.Name, err)
		}
		h.Write(p)
		if _, err := b.tw.Write(p); err != nil {
			return fmt.Errorf("estargz: build: writing %q: %w", e.hdr.Name, err)
		}
		n -= int64(len(p))
	}
	return nil
}

// finish closes the last member and writes the TOC member and the footer.
func (b *buildWriter) finish() (BuildResult, error) {
	if err := b.closeMember(); err != nil {
		return BuildResult{}, err
	}
	tocOff := b.cw.n
	tocJSON, err := json.MarshalIndent(&b.toc, "", "\t")
	if err != nil {
		return BuildResult{}, fmt.Errorf("estargz: build: TOC: %w", err)
	}
	// The TOC member is a tar of its own (header, JSON, end-of-archive);
	// it also ends the tar stream the DiffID covers.
	tw := tar.NewWriter(buildStreamWriter{b})
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: TOCTarName, Size: int64(len(tocJSON))}); err != nil {
		return BuildResult{}, err
	}
	if _, err := tw.Write(tocJSON); err != nil {
		return BuildResult{}, err
	}
	if err := tw.Close(); err != nil {
		return BuildResult{}, err
	}
	if err := b.closeMember(); err != nil {
		return BuildResult{}, err
	}
	if _, err := b.cw.Write(appendFooter(nil, tocOff)); err != nil {
		return BuildResult{}, err
	}
	if err := b.bw.Flush(); err != nil {
		return BuildResult{}, err
	}
	return BuildResult{
		Digest:           digest.NewDigest(digest.SHA256, b.cw.h),
		Size:             b.cw.n,
		TOCDigest:        digest.FromBytes(tocJSON),
		DiffID:           digest.NewDigest(digest.SHA256, b.diff),
		UncompressedSize: b.un,
	}, nil
}
