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
	"runtime"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
)

// buildWriter writes the blob: a sequence of gzip members whose
// concatenated content is one tar stream. It follows the reference
// writer's layout (estargz.go appendTar): tar headers and padding go into
// whichever member is open, and each payload chunk starts a new member
// (unless packed), so that a chunk is decompressible on its own.
//
// Members are independent, so they are compressed in parallel: the
// calling goroutine reads the input, hashes and fills member buffers;
// workers compress them; one output goroutine writes them in order and
// gives their TOC entries the member's blob offset. A fixed pool of member
// buffers bounds memory to a few members (about ChunkSize each), whatever
// the layer size, and is the back pressure.
type buildWriter struct {
	ctx  context.Context
	src  io.ReaderAt
	opts BuildOptions

	bw *bufio.Writer
	cw *buildCountWriter // compressed bytes: size and blob digest

	cur         *buildMember // the open member, or nil
	members     int          // members opened so far
	memberStart int64        // uncompressed stream position of cur
	split       int          // close a member before a header past this size

	diff hash.Hash // DiffID over the uncompressed stream
	un   int64     // uncompressed bytes written
	tw   *tar.Writer

	toc                  buildTOC
	lastUname, lastGname map[int]string
	buf                  []byte

	// The pipeline. free holds the idle members; work and order carry
	// each closed member to a worker and to the output goroutine.
	free, work, order chan *buildMember
	failed            chan struct{} // closed on the first output error
	werr              error         // the output error; read after done
	done              sync.WaitGroup
	stopped           bool
}

// buildMember is one gzip member on its way through the pipeline.
type buildMember struct {
	raw     []byte           // uncompressed content
	out     bytes.Buffer     // compressed by a worker
	err     error            // compression error
	entries []*buildTOCEntry // TOC entries whose Offset is this member's
	ready   chan struct{}    // closed when out (or err) is set
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

// buildStreamWriter is the uncompressed side: it fills the open member
// and feeds the DiffID.
type buildStreamWriter struct{ b *buildWriter }

func (s buildStreamWriter) Write(p []byte) (int, error) {
	b := s.b
	if b.cur == nil {
		if err := b.openMember(); err != nil {
			return 0, err
		}
	}
	b.cur.raw = append(b.cur.raw, p...)
	b.diff.Write(p)
	b.un += int64(len(p))
	return len(p), nil
}

func newBuildWriter(ctx context.Context, w io.Writer, src io.ReaderAt, opts BuildOptions) (*buildWriter, error) {
	level := opts.CompressionLevel
	if level == 0 {
		level = gzip.DefaultCompression
	}
	if level < gzip.StatelessCompression || level > gzip.BestCompression {
		return nil, fmt.Errorf("estargz: build: compression level %d: gzip: invalid compression level: %d", opts.CompressionLevel, level)
	}
	opts.CompressionLevel = level
	bw := bufio.NewWriterSize(w, 256<<10)
	workers := min(runtime.GOMAXPROCS(0), 4)
	inflight := workers + 2
	b := &buildWriter{
		ctx:       ctx,
		src:       src,
		opts:      opts,
		bw:        bw,
		cw:        &buildCountWriter{w: bw, h: sha256.New()},
		split:     max(opts.ChunkSize, opts.MinChunkSize),
		diff:      sha256.New(),
		toc:       buildTOC{Version: 1},
		lastUname: make(map[int]string),
		lastGname: make(map[int]string),
		buf:       make([]byte, 128<<10),
		free:      make(chan *buildMember, inflight),
		work:      make(chan *buildMember, inflight),
		order:     make(chan *buildMember, inflight),
		failed:    make(chan struct{}),
	}
	for range inflight {
		b.free <- buildMembers.Get().(*buildMember)
	}
	b.tw = tar.NewWriter(buildStreamWriter{b})
	b.done.Add(workers + 1)
	for range workers {
		go b.compressMembers(level)
	}
	go b.writeMembers()
	return b, nil
}

// compressMembers is a worker: it gzips each member it receives.
func (b *buildWriter) compressMembers(level int) {
	defer b.done.Done()
	gz := getGzip(io.Discard, level)
	defer putGzip(gz, level)
	for m := range b.work {
		gz.Reset(&m.out)
		if _, err := gz.Write(m.raw); err != nil {
			m.err = err
		} else {
			m.err = gz.Close()
		}
		close(m.ready)
	}
}

// writeMembers is the output goroutine: it writes the members in order,
// sets their TOC entries' offsets and returns them to the pool. After an
// error it keeps recycling, so that the producer never blocks.
func (b *buildWriter) writeMembers() {
	defer b.done.Done()
	for m := range b.order {
		<-m.ready
		if b.werr == nil {
			if b.werr = m.err; b.werr == nil {
				off := b.cw.n
				for _, e := range m.entries {
					e.Offset = off
				}
				_, b.werr = b.cw.Write(m.out.Bytes())
			}
			if b.werr != nil {
				close(b.failed)
			}
		}
		clear(m.entries) // do not keep this Build's TOC alive in the pool
		m.raw, m.entries, m.err = m.raw[:0], m.entries[:0], nil
		m.out.Reset()
		b.free <- m
	}
}

// stop closes the pipeline and waits for its goroutines. It returns the
// output error, if any. It is idempotent.
func (b *buildWriter) stop() error {
	if !b.stopped {
		b.closeMember()
		b.stopped = true
		close(b.work)
		close(b.order)
		b.done.Wait()
		for range cap(b.free) {
			if m := <-b.free; cap(m.raw) <= 2*buildDefaultChunkSize+(1<<20) {
				buildMembers.Put(m)
			}
		}
	}
	return b.werr
}

// buildGzips keeps gzip writers across Builds, one pool per level
// (gzip.StatelessCompression to gzip.BestCompression): a new writer
// allocates its compressor's tables and history, about 2 MiB per Build of
// a small layer, which cost more than compressing it.
var buildGzips [gzip.BestCompression - gzip.StatelessCompression + 1]sync.Pool

// getGzip returns a gzip writer of the level, which newBuildWriter has
// checked, writing to w.
func getGzip(w io.Writer, level int) *gzip.Writer {
	if gz, ok := buildGzips[level-gzip.StatelessCompression].Get().(*gzip.Writer); ok {
		gz.Reset(w)
		return gz
	}
	gz, _ := gzip.NewWriterLevel(w, level)
	return gz
}

// putGzip returns gz, of the level, to its pool.
func putGzip(gz *gzip.Writer, level int) {
	gz.Reset(io.Discard)
	buildGzips[level-gzip.StatelessCompression].Put(gz)
}

// buildMembers keeps member buffers across Builds: they grow to about a
// chunk each, which is worth not allocating again for every layer.
var buildMembers = sync.Pool{New: func() any { return new(buildMember) }}

// openMember takes an idle member from the pool, waiting for one if all
// are in flight.
func (b *buildWriter) openMember() error {
	select {
	case m := <-b.free:
		m.ready = make(chan struct{})
		b.cur = m
	case <-b.failed:
		return b.stop()
	case <-b.ctx.Done():
		return b.ctx.Err()
	}
	b.members++
	b.memberStart = b.un
	return nil
}

// closeMember hands the open member to the pipeline.
func (b *buildWriter) closeMember() {
	if b.cur == nil || b.stopped {
		return
	}
	b.order <- b.cur // never blocks: the channels hold every member
	b.work <- b.cur
	b.cur = nil
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
	if b.cur != nil && len(b.cur.raw) >= b.split {
		// Only headers since the last payload: a member may end anywhere
		// outside a chunk, and this bounds its buffer.
		b.closeMember()
	}
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
// packed into the open one at an inner offset. The member's blob offset
// is set on ent once the member is written.
func (b *buildWriter) startChunk(e *buildEntry, ent *buildTOCEntry) error {
	// A payload never shares the first member: offset 0 reads as "no
	// payload" in the TOC (it is omitted from the JSON).
	pack := b.opts.MinChunkSize > 0 && !e.ownMember && b.cur != nil && b.members > 1 &&
		b.un-b.memberStart < int64(b.opts.MinChunkSize)
	if pack {
		ent.InnerOffset = b.un - b.memberStart
	} else {
		b.closeMember()
		if err := b.openMember(); err != nil {
			return err
		}
	}
	b.cur.entries = append(b.cur.entries, ent)
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
	if err := b.stop(); err != nil {
		return BuildResult{}, err
	}
	tocOff := b.cw.n
	tocJSON, err := json.MarshalIndent(&b.toc, "", "\t")
	if err != nil {
		return BuildResult{}, fmt.Errorf("estargz: build: TOC: %w", err)
	}
	// The TOC member is a tar of its own (header, JSON, end-of-archive);
	// it also ends the tar stream the DiffID covers.
	var tocTar bytes.Buffer
	tw := tar.NewWriter(&tocTar)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: TOCTarName, Size: int64(len(tocJSON))}); err != nil {
		return BuildResult{}, err
	}
	if _, err := tw.Write(tocJSON); err != nil {
		return BuildResult{}, err
	}
	if err := tw.Close(); err != nil {
		return BuildResult{}, err
	}
	b.diff.Write(tocTar.Bytes())
	b.un += int64(tocTar.Len())
	gz := getGzip(b.cw, b.opts.CompressionLevel)
	defer putGzip(gz, b.opts.CompressionLevel)
	if _, err := gz.Write(tocTar.Bytes()); err != nil {
		return BuildResult{}, err
	}
	if err := gz.Close(); err != nil {
		return BuildResult{}, err
	}
	if _, err := b.cw.Write(AppendFooter(nil, tocOff)); err != nil {
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
