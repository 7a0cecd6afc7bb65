// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	digest "github.com/opencontainers/go-digest"
)

// External TOC layout (stargz-snapshotter estargz/externaltoc): the blob
// holds the entries and ends in the 46-byte footer "SG", LEN=17,
// "STARGZEXTERNALTOC", which names no offset; the TOC is a separate blob,
// a gzip member holding a tar with the one entry stargz.index.json, stored
// as a layer of the "TOC image" (by convention the image's tag plus
// "-esgztoc") whose descriptor carries the layer.digest annotation.

// ExternalBuildOptions configures BuildExternal.
type ExternalBuildOptions struct {
	BuildOptions
	// Lossless keeps the input tar byte for byte: the blob gunzips to
	// exactly the input, so its DiffID is the input's. Entries stay in tar
	// order and no landmark is added, so PrioritizedFiles must be empty.
	// Only possible with an external TOC, because an embedded TOC is a tar
	// entry of the stream.
	Lossless bool
}

// ExternalBuildResult is a BuildResult plus the TOC blob to store in the
// TOC image.
type ExternalBuildResult struct {
	BuildResult
	// TOC is the TOC blob: a gzip member of a tar holding
	// stargz.index.json. Its JSON has digest BuildResult.TOCDigest.
	TOC []byte
}

// BuildExternal is Build for a blob whose TOC is stored elsewhere: w
// receives the entries and the 46-byte external footer, and the TOC is
// returned. The TOC is not part of the blob's tar stream, so DiffID and
// UncompressedSize cover only the entries (and, unless Lossless, the
// end-of-archive blocks Build's TOC member would have carried).
func BuildExternal(ctx context.Context, w io.Writer, tar io.ReaderAt, tarSize int64, opts ExternalBuildOptions) (ExternalBuildResult, error) {
	if opts.Lossless && len(opts.PrioritizedFiles) > 0 {
		return ExternalBuildResult{}, errors.New("estargz: build: a lossless build cannot reorder entries for prioritized files")
	}
	if err := checkBuildOptions(&opts.BuildOptions); err != nil {
		return ExternalBuildResult{}, err
	}
	if tarSize < 0 {
		return ExternalBuildResult{}, fmt.Errorf("estargz: build: negative tar size %d", tarSize)
	}
	if opts.Lossless {
		return buildLossless(ctx, w, tar, tarSize, opts.BuildOptions)
	}
	entries, err := scanTar(ctx, tar, tarSize)
	if err != nil {
		return ExternalBuildResult{}, err
	}
	ordered, err := orderEntries(entries, opts.PrioritizedFiles)
	if err != nil {
		return ExternalBuildResult{}, err
	}
	if err := checkTree(ordered); err != nil {
		return ExternalBuildResult{}, err
	}
	bw, err := newBuildWriter(ctx, w, tar, opts.BuildOptions)
	if err != nil {
		return ExternalBuildResult{}, err
	}
	defer bw.stop()
	for _, e := range ordered {
		if err := bw.writeEntry(e); err != nil {
			return ExternalBuildResult{}, err
		}
	}
	// The end-of-archive blocks go into the stream, so that it is a
	// complete tar without the TOC entry.
	if err := bw.tw.Close(); err != nil {
		return ExternalBuildResult{}, err
	}
	return bw.finishExternal()
}

// losslessEntry is one input entry of a lossless build.
type losslessEntry struct {
	*buildEntry
	// indexed is false for entries the TOC leaves out: an earlier
	// occurrence of a name, and a stargz.index.json or landmark of the
	// input. Their bytes are kept, as plain stream bytes.
	indexed bool
}

// buildLossless writes the input's bytes unchanged: the bytes between
// payloads (headers, padding, end-of-archive blocks) go raw into whichever
// member is open, and each payload chunk starts a member (or is packed),
// as in Build.
func buildLossless(ctx context.Context, w io.Writer, ra io.ReaderAt, size int64, opts BuildOptions) (ExternalBuildResult, error) {
	entries, err := scanLossless(ctx, ra, size)
	if err != nil {
		return ExternalBuildResult{}, err
	}
	var tree []*buildEntry
	for _, e := range entries {
		if e.indexed {
			tree = append(tree, e.buildEntry)
		}
	}
	if err := checkTree(tree); err != nil {
		return ExternalBuildResult{}, err
	}
	bw, err := newBuildWriter(ctx, w, ra, opts)
	if err != nil {
		return ExternalBuildResult{}, err
	}
	defer bw.stop()
	var pos int64 // input bytes written so far
	for _, e := range entries {
		if err := bw.copyRaw(pos, e.off); err != nil {
			return ExternalBuildResult{}, err
		}
		pos = e.off
		if !e.indexed {
			continue // its payload, if any, is copied raw with the next gap
		}
		if err := bw.writeLosslessEntry(e.buildEntry); err != nil {
			return ExternalBuildResult{}, err
		}
		pos = e.off + e.hdr.Size
	}
	if err := bw.copyRaw(pos, size); err != nil {
		return ExternalBuildResult{}, err
	}
	if len(bw.toc.Entries) == 0 {
		// A TOC needs an entry, and no landmark can be added: describe
		// the root, which every reader creates anyway.
		bw.toc.Entries = append(bw.toc.Entries, &buildTOCEntry{Name: "./", Type: "dir", Mode: 0o755})
	}
	return bw.finishExternal()
}

// scanLossless reads the headers of the input and returns every entry in
// tar order, marking which ones the TOC describes.
func scanLossless(ctx context.Context, ra io.ReaderAt, size int64) ([]losslessEntry, error) {
	var all []losslessEntry
	last := make(map[string]int)
	err := walkTar(ctx, ra, size, func(h *tar.Header, off int64) error {
		name, err := cleanBuildName(h.Name)
		if err != nil {
			return err
		}
		if name == TOCTarName {
			all = append(all, losslessEntry{buildEntry: &buildEntry{hdr: h, name: name, off: off}})
			return nil
		}
		e, err := newBuildEntry(h, off, size)
		if err != nil {
			return err
		}
		if e == nil { // a landmark of the input, which newBuildEntry drops: an ordinary file here
			e = &buildEntry{hdr: h, name: name, off: off}
		}
		last[e.name] = len(all)
		all = append(all, losslessEntry{buildEntry: e, indexed: true})
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range all {
		if all[i].indexed && last[all[i].name] != i {
			all[i].indexed = false
		}
	}
	return all, nil
}

// copyRaw copies input bytes [from, to) into the stream as they are,
// closing an oversized member first as writeEntry does before a header.
func (b *buildWriter) copyRaw(from, to int64) error {
	if to <= from {
		return nil
	}
	if b.cur != nil && len(b.cur.raw) >= b.split {
		b.closeMember()
	}
	return b.copyRange(from, to-from, io.Discard, "")
}

// copyRange copies n input bytes from off to the stream and to h.
func (b *buildWriter) copyRange(off, n int64, h io.Writer, name string) error {
	r := io.NewSectionReader(b.src, off, n)
	s := buildStreamWriter{b}
	for n > 0 {
		if err := b.ctx.Err(); err != nil {
			return err
		}
		p := b.buf[:min(int64(len(b.buf)), n)]
		if _, err := io.ReadFull(r, p); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return fmt.Errorf("estargz: build: reading %q at %d: %w", name, off, err)
		}
		h.Write(p)
		if _, err := s.Write(p); err != nil {
			return err
		}
		off += int64(len(p))
		n -= int64(len(p))
	}
	return nil
}

// writeLosslessEntry records e's TOC entries and copies its payload in
// chunks; its header bytes were already copied raw.
func (b *buildWriter) writeLosslessEntry(e *buildEntry) error {
	if err := b.ctx.Err(); err != nil {
		return err
	}
	ent := b.tocEntry(e.hdr)
	if e.hdr.Typeflag != tar.TypeReg || e.hdr.Size == 0 {
		if e.hdr.Typeflag == tar.TypeReg {
			ent.Digest = digest.SHA256.FromBytes(nil).String()
		}
		b.toc.Entries = append(b.toc.Entries, ent)
		return nil
	}
	file := ent
	fileHash := digest.SHA256.Hash()
	size := e.hdr.Size
	for written := int64(0); written < size; {
		n := int64(b.opts.ChunkSize)
		if remain := size - written; remain < n {
			n = remain
		} else {
			ent.ChunkSize = n
		}
		if err := b.startChunk(e, ent); err != nil {
			return err
		}
		ent.ChunkOffset = written
		chunkHash := digest.SHA256.Hash()
		if err := b.copyRange(e.off+written, n, io.MultiWriter(chunkHash, fileHash), e.hdr.Name); err != nil {
			return err
		}
		ent.ChunkDigest = digest.NewDigest(digest.SHA256, chunkHash).String()
		b.toc.Entries = append(b.toc.Entries, ent)
		written += n
		ent = &buildTOCEntry{Name: e.hdr.Name, Type: "chunk"}
	}
	file.Digest = digest.NewDigest(digest.SHA256, fileHash).String()
	return nil
}

// finishExternal closes the last member, writes the external footer and
// returns the TOC blob.
func (b *buildWriter) finishExternal() (ExternalBuildResult, error) {
	if err := b.stop(); err != nil {
		return ExternalBuildResult{}, err
	}
	tocJSON, err := json.MarshalIndent(&b.toc, "", "\t")
	if err != nil {
		return ExternalBuildResult{}, fmt.Errorf("estargz: build: TOC: %w", err)
	}
	toc, err := tocBlob(tocJSON, b.opts.CompressionLevel)
	if err != nil {
		return ExternalBuildResult{}, err
	}
	if _, err := b.cw.Write(appendExternalFooter(nil)); err != nil {
		return ExternalBuildResult{}, err
	}
	if err := b.bw.Flush(); err != nil {
		return ExternalBuildResult{}, err
	}
	return ExternalBuildResult{
		BuildResult: BuildResult{
			Digest:           digest.NewDigest(digest.SHA256, b.cw.h),
			Size:             b.cw.n,
			TOCDigest:        digest.FromBytes(tocJSON),
			DiffID:           digest.NewDigest(digest.SHA256, b.diff),
			UncompressedSize: b.un,
		},
		TOC: toc,
	}, nil
}

// tocBlob returns the gzip member of a tar holding tocJSON as
// stargz.index.json, as the external TOC image stores it. level must be
// one newBuildWriter accepts.
func tocBlob(tocJSON []byte, level int) ([]byte, error) {
	var buf bytes.Buffer
	gz := getGzip(&buf, level)
	defer putGzip(gz, level)
	tw := tar.NewWriter(gz)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: TOCTarName, Size: int64(len(tocJSON))}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(tocJSON); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// appendExternalFooter appends the 46-byte external-TOC footer: an empty
// gzip member whose extra field is "SG", LEN=17, "STARGZEXTERNALTOC".
func appendExternalFooter(dst []byte) []byte {
	dst = append(dst, 0x1f, 0x8b, 8, 0x04, 0, 0, 0, 0, 0, 0xff)
	dst = binary.LittleEndian.AppendUint16(dst, 4+uint16(len(externalTOCMagic)))
	dst = append(dst, 'S', 'G')
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(externalTOCMagic)))
	dst = append(dst, externalTOCMagic...)
	dst = append(dst, 1, 0, 0, 0xff, 0xff)
	return append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
}

// OpenExternal is Open for a blob whose TOC is stored elsewhere: r holds
// the blob of the given size, which must end in the external footer, and
// toc is the TOC blob from the TOC image (a gzip member of a tar holding
// stargz.index.json). The TOC JSON is verified against opts.TOCDigest as
// Open does. It makes one ReadAt call, for the footer, and stops with
// ctx's error as Open does.
//
// Errors wrap ErrNotEStargz (no external footer, or toc is no TOC blob),
// ErrTooLarge, ErrVerify or index.ErrInvalid, as Open's do.
func OpenExternal(ctx context.Context, r io.ReaderAt, size int64, toc []byte, opts OpenOptions) (*Blob, error) {
	maxTOC, err := opts.check()
	if err != nil {
		return nil, err
	}
	f, err := readFooter(r, size)
	switch {
	case errors.Is(err, ErrExternalTOC):
	case err != nil:
		return nil, err
	default:
		return nil, fmt.Errorf("%w: the blob embeds its TOC (footer of %d bytes), not an external one", ErrNotEStargz, f.Size)
	}
	if int64(len(toc)) > maxCompressedTOC(maxTOC) {
		return nil, fmt.Errorf("%w: compressed TOC of %d bytes, limit %d", ErrTooLarge, len(toc), maxCompressedTOC(maxTOC))
	}
	tocJSON, got, err := tocJSONFrom(ctx, toc, maxTOC, opts.TOCDigest.Algorithm())
	if err != nil {
		return nil, fmt.Errorf("external TOC: %w", err)
	}
	if got != opts.TOCDigest {
		return nil, fmt.Errorf("%w: external TOC JSON has digest %s, want %s", ErrVerify, got, opts.TOCDigest)
	}
	// Chunks end before the footer.
	return newBlob(ctx, tocJSON, size-f.Size, f.Size, opts.TOCDigest)
}
