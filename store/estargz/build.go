// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"unicode/utf8"

	digest "github.com/opencontainers/go-digest"
)

// BuildOptions configures Build. The zero value builds with 4 MiB chunks,
// no small-file packing, no prioritized files and gzip's default level.
type BuildOptions struct {
	// ChunkSize is the largest uncompressed size of one chunk: a larger
	// regular file is split into chunks of this size, each starting its
	// own gzip member. 0 means 4 MiB; negative is an error.
	ChunkSize int
	// MinChunkSize > 0 packs small payloads into shared gzip members, like
	// the reference library's WithMinChunkSize: a chunk starts a new member
	// only once the open member holds at least MinChunkSize bytes, else it
	// is appended to it and its TOC entry carries innerOffset. Unlike the
	// reference, which flushes the compressor and counts compressed bytes,
	// the count is of uncompressed bytes, so no flush markers are needed
	// and the cost of decompressing up to a packed chunk stays bounded.
	// 0 disables packing; negative is an error.
	MinChunkSize int
	// PrioritizedFiles are placed first, in this order, each preceded by
	// its parent directories and (for a hard link) its target when those
	// are tar entries, and followed by .prefetch.landmark. A name missing
	// from the tar is an error naming it. Without prioritized files,
	// .no.prefetch.landmark comes first.
	PrioritizedFiles []string
	// CompressionLevel is the gzip level (gzip.HuffmanOnly up to
	// gzip.BestCompression); 0 means gzip.DefaultCompression, so level 0
	// (store) cannot be chosen. The reference library defaults to
	// BestCompression.
	CompressionLevel int
}

// BuildResult describes a blob written by Build. The digests and sizes
// are what an OCI descriptor and image config need.
type BuildResult struct {
	Digest           digest.Digest // sha256 of the blob written
	Size             int64         // blob size
	TOCDigest        digest.Digest // sha256 of the TOC JSON
	DiffID           digest.Digest // sha256 of the uncompressed tar
	UncompressedSize int64         // size of the uncompressed tar
}

// errBadTar is wrapped by every error about the input tar (as opposed to
// an I/O error, a bad option or a cancelled context).
var errBadTar = errors.New("bad input tar")

// Build converts the tar archive held in tar[0:tarSize] into an eStargz
// blob written to w, and returns its digests and sizes.
//
// The blob gunzips to a tar any runtime unpacks: the input entries with
// their headers preserved (the input's end-of-archive blocks dropped),
// a landmark file at the root, then stargz.index.json and the
// end-of-archive blocks. Like the reference writer, every regular file
// gets a digest (also when empty) and every non-empty chunk a chunkDigest.
// Entries named stargz.index.json or like a landmark are dropped from the
// input, so that converting a converted layer works.
//
// The input is read twice through tar (headers first, then payloads in
// output order), which is what makes reordering for prioritized files
// possible without holding payloads in memory; only the headers and the
// TOC are kept. Build makes no concurrent ReadAt calls.
//
// Gzip members are independent, so Build compresses them on up to
// min(GOMAXPROCS, 4) goroutines, which it waits for before returning. A
// fixed pool of member buffers bounds its memory to a few times
// max(ChunkSize, MinChunkSize) per worker, whatever the layer size.
// Output is deterministic: the same input and options give the same blob.
// Concurrent Builds are safe.
//
// Odd input is refused with an error wrapping an unexported class:
//   - names with a ".." element or a NUL byte;
//   - names, link targets, user and group names or xattr names that are
//     not UTF-8 (the TOC JSON cannot carry them; the reference writer
//     silently mangles them);
//   - sparse files, PAX global headers and other unsupported types;
//   - payloads past tarSize;
//   - a root that is not a directory, or a parent that is not one;
//   - hard links that do not point at an earlier non-directory entry.
//
// A name that occurs twice keeps its last occurrence, at that position,
// as tar extraction would leave it (the reference does the same).
//
// Build honours ctx between entries and while copying payloads. On error
// w has received a partial blob.
func Build(ctx context.Context, w io.Writer, tar io.ReaderAt, tarSize int64, opts BuildOptions) (BuildResult, error) {
	return build(ctx, w, tar, tarSize, opts)
}

func build(ctx context.Context, w io.Writer, ra io.ReaderAt, size int64, opts BuildOptions) (BuildResult, error) {
	if err := checkBuildOptions(&opts); err != nil {
		return BuildResult{}, err
	}
	if size < 0 {
		return BuildResult{}, fmt.Errorf("estargz: build: negative tar size %d", size)
	}
	entries, err := scanTar(ctx, ra, size)
	if err != nil {
		return BuildResult{}, err
	}
	ordered, err := orderEntries(entries, opts.PrioritizedFiles)
	if err != nil {
		return BuildResult{}, err
	}
	if err := checkTree(ordered); err != nil {
		return BuildResult{}, err
	}
	bw, err := newBuildWriter(ctx, w, ra, opts)
	if err != nil {
		return BuildResult{}, err
	}
	defer bw.stop()
	for _, e := range ordered {
		if err := bw.writeEntry(e); err != nil {
			return BuildResult{}, err
		}
	}
	return bw.finish()
}

func checkBuildOptions(o *BuildOptions) error {
	switch {
	case o.ChunkSize < 0:
		return fmt.Errorf("estargz: build: negative chunk size %d", o.ChunkSize)
	case o.MinChunkSize < 0:
		return fmt.Errorf("estargz: build: negative minimum chunk size %d", o.MinChunkSize)
	case o.ChunkSize == 0:
		o.ChunkSize = buildDefaultChunkSize
	}
	return nil
}

// buildEntry is one tar entry to write.
type buildEntry struct {
	hdr  *tar.Header
	name string // cleaned: relative, no "." or "..", "" for the root
	link string // cleaned hard link target
	off  int64  // offset of a regular file's payload in the input tar
	data []byte // payload held in memory instead (landmarks only)
	// ownMember forces the payload into a gzip member of its own
	// (landmarks), whatever MinChunkSize says.
	ownMember bool
}

// scanTar reads the headers of the input and returns its entries in tar
// order, each name once (its last occurrence).
func scanTar(ctx context.Context, ra io.ReaderAt, size int64) ([]*buildEntry, error) {
	var all []*buildEntry
	last := make(map[string]int)
	err := walkTar(ctx, ra, size, func(h *tar.Header, off int64) error {
		e, err := newBuildEntry(h, off, size)
		if e == nil || err != nil {
			return err
		}
		last[e.name] = len(all)
		all = append(all, e)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for i, e := range all {
		if last[e.name] == i {
			out = append(out, e)
		}
	}
	return out, nil
}

// walkTar calls fn with every header of the tar in ra[0:size] and the
// offset of the entry's payload.
func walkTar(ctx context.Context, ra io.ReaderAt, size int64, fn func(h *tar.Header, off int64) error) error {
	// tar.Reader reads whole blocks and seeks over payloads (SectionReader
	// is an io.Seeker), so after Next the section's position is exactly
	// the start of the entry's payload.
	sr := io.NewSectionReader(ra, 0, size)
	tr := tar.NewReader(sr)
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("estargz: build: %w: entry %d: %v", errBadTar, n, err)
		}
		off, err := sr.Seek(0, io.SeekCurrent)
		if err != nil {
			return err
		}
		if err := fn(h, off); err != nil {
			return err
		}
	}
}

// newBuildEntry checks one input header. It returns nil for entries that
// Build replaces (the TOC and the landmarks).
func newBuildEntry(h *tar.Header, off, size int64) (*buildEntry, error) {
	name, err := cleanBuildName(h.Name)
	if err != nil {
		return nil, err
	}
	switch name {
	case TOCTarName, PrefetchLandmark, NoPrefetchLandmark:
		return nil, nil
	}
	if err := checkUTF8(h); err != nil {
		return nil, err
	}
	e := &buildEntry{hdr: h, name: name, off: off}
	switch h.Typeflag {
	case tar.TypeReg:
		for k := range h.PAXRecords {
			if strings.HasPrefix(k, "GNU.sparse.") {
				return nil, fmt.Errorf("estargz: build: %w: %q is a sparse file, which is not supported", errBadTar, h.Name)
			}
		}
		if h.Size > size-off {
			return nil, fmt.Errorf("estargz: build: %w: %q: payload of %d bytes at %d runs past the end of the %d-byte tar", errBadTar, h.Name, h.Size, off, size)
		}
	case tar.TypeLink:
		if e.link, err = cleanBuildName(h.Linkname); err != nil {
			return nil, err
		}
		if e.link == "" {
			return nil, fmt.Errorf("estargz: build: %w: hard link %q to the root", errBadTar, h.Name)
		}
	case tar.TypeDir, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	case tar.TypeGNUSparse:
		return nil, fmt.Errorf("estargz: build: %w: %q is a sparse file, which is not supported", errBadTar, h.Name)
	default:
		return nil, fmt.Errorf("estargz: build: %w: %q has unsupported type %q", errBadTar, h.Name, h.Typeflag)
	}
	if h.Typeflag != tar.TypeReg {
		h.Size = 0 // header-only types: a size would be meaningless
	}
	if name == "" && h.Typeflag != tar.TypeDir {
		return nil, fmt.Errorf("estargz: build: %w: %q names the root but is not a directory", errBadTar, h.Name)
	}
	return e, nil
}

// checkUTF8 refuses strings the TOC JSON cannot carry: encoding/json
// replaces invalid UTF-8 with U+FFFD, so the TOC would name another file
// (or link target) than the tar, and distinct names could collide.
func checkUTF8(h *tar.Header) error {
	for _, s := range []string{h.Name, h.Linkname, h.Uname, h.Gname} {
		if !utf8.ValidString(s) {
			return fmt.Errorf("estargz: build: %w: %q: %q is not valid UTF-8, which the TOC cannot represent", errBadTar, h.Name, s)
		}
	}
	for k := range h.PAXRecords {
		if !utf8.ValidString(k) {
			return fmt.Errorf("estargz: build: %w: %q: xattr %q is not valid UTF-8, which the TOC cannot represent", errBadTar, h.Name, k)
		}
	}
	return nil
}

// cleanBuildName returns name as a clean relative path ("" for the root).
// Any ".." element is refused, even one that stays inside the root: no
// sane layer has one, and a reader must not have to resolve it.
func cleanBuildName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", fmt.Errorf("estargz: build: %w: name %q contains NUL", errBadTar, name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", fmt.Errorf("estargz: build: %w: name %q has a \"..\" element", errBadTar, name)
		}
	}
	return strings.TrimPrefix(path.Clean("/"+name), "/"), nil
}

// orderEntries puts the prioritized files (with the parents and hard link
// targets they need) first, then the landmark, then the rest in tar order.
func orderEntries(entries []*buildEntry, prioritized []string) ([]*buildEntry, error) {
	landmark := func(name string) *buildEntry {
		return &buildEntry{
			hdr:       &tar.Header{Name: name, Typeflag: tar.TypeReg, Size: 1},
			name:      name,
			data:      []byte{buildLandmarkContents},
			ownMember: true,
		}
	}
	out := make([]*buildEntry, 0, len(entries)+1)
	if len(prioritized) == 0 {
		return append(append(out, landmark(NoPrefetchLandmark)), entries...), nil
	}
	byName := make(map[string]*buildEntry, len(entries))
	for _, e := range entries {
		byName[e.name] = e
	}
	picked := make(map[*buildEntry]bool)
	// move appends e's parent directories, its hard link target and then
	// e itself, each once. The visiting set stops hard link loops, which
	// checkTree reports.
	visiting := make(map[*buildEntry]bool)
	var move func(e *buildEntry)
	move = func(e *buildEntry) {
		if picked[e] || visiting[e] {
			return
		}
		visiting[e] = true
		for dir := e.name; dir != ""; {
			if dir = path.Dir(dir); dir == "." {
				dir = ""
			}
			if p, ok := byName[dir]; ok {
				move(p)
				break // move(p) already moved p's own parents
			}
		}
		if e.hdr.Typeflag == tar.TypeLink {
			if t, ok := byName[e.link]; ok {
				move(t)
			}
		}
		if !picked[e] {
			picked[e] = true
			out = append(out, e)
		}
	}
	for _, name := range prioritized {
		c, err := cleanBuildName(name)
		if err != nil {
			return nil, fmt.Errorf("estargz: build: prioritized file: %w", err)
		}
		e, ok := byName[c]
		if !ok {
			return nil, fmt.Errorf("estargz: build: prioritized file %q is not in the tar", name)
		}
		move(e)
	}
	out = append(out, landmark(PrefetchLandmark))
	for _, e := range entries {
		if !picked[e] {
			out = append(out, e)
		}
	}
	return out, nil
}

// checkAncestors refuses an entry below a name that is not a directory:
// its nearest ancestor in the tar must be one (the directories between
// are implicit ones, which a reader creates). Directories found good are
// added to final as implicit, so each is walked once.
func checkAncestors(e *buildEntry, final map[string]byte) error {
	dir := e.name
	for dir != "" {
		if dir = path.Dir(dir); dir == "." {
			dir = ""
		}
		t, ok := final[dir]
		if ok && t != tar.TypeDir && t != implicitDir {
			return fmt.Errorf("estargz: build: %w: an ancestor of %q, %q, is not a directory", errBadTar, e.hdr.Name, dir)
		}
		if ok {
			break
		}
		final[dir] = implicitDir
	}
	return nil
}

// implicitDir marks, in checkTree's map of final types, a directory no
// entry names.
const implicitDir = 0xff

// checkTree refuses an output order whose tar would not unpack into the
// tree the TOC describes.
func checkTree(ordered []*buildEntry) error {
	final := make(map[string]byte, len(ordered))
	for _, e := range ordered {
		final[e.name] = e.hdr.Typeflag
	}
	written := make(map[string]byte, len(ordered))
	for _, e := range ordered {
		if err := checkAncestors(e, final); err != nil {
			return err
		}
		if e.hdr.Typeflag == tar.TypeLink {
			t, ok := written[e.link]
			switch {
			case !ok:
				return fmt.Errorf("estargz: build: %w: hard link %q to %q, which is not an earlier entry", errBadTar, e.hdr.Name, e.hdr.Linkname)
			case t == tar.TypeDir:
				return fmt.Errorf("estargz: build: %w: hard link %q to directory %q", errBadTar, e.hdr.Name, e.hdr.Linkname)
			}
		}
		written[e.name] = e.hdr.Typeflag
	}
	return nil
}
