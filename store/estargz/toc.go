// SPDX-License-Identifier: Apache-2.0

package estargz

import (
	"context"
	"fmt"
	"strings"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store/index"
)

// Names an eStargz blob reserves.
const (
	// TOCTarName is the name of the tar entry holding the TOC JSON.
	TOCTarName = "stargz.index.json"
	// PrefetchLandmark is a root file placed right after the prioritized
	// files: everything before its payload is worth prefetching.
	PrefetchLandmark = ".prefetch.landmark"
	// NoPrefetchLandmark is a root file placed first when no file is
	// prioritized: the layer asks for no prefetch.
	NoPrefetchLandmark = ".no.prefetch.landmark"
)

const (
	// maxDeflateRatio bounds how many bytes a deflate stream can inflate
	// to per compressed byte (the format's limit is about 1032). A chunk
	// claiming more than this from its compressed range cannot be real.
	maxDeflateRatio = 1100
	// minEntryJSON and entrySlack bound the entries (implicit directories
	// included) an index may get from a TOC of a given size: one per 32
	// bytes of JSON, plus the slack. Real TOCs spend 100 to 300 bytes on
	// an entry; the bound keeps memory proportional to the TOC size even
	// when names imply many directories.
	minEntryJSON = 32
	entrySlack   = 1 << 16
)

// tocEntry is one element of the TOC's "entries" array (format version 1):
// the fields both formats share (index.TOCEntry) and eStargz's payload
// fields. Fields not listed here are ignored. Field meanings follow the
// eStargz specification; see the package documentation.
type tocEntry struct {
	index.TOCEntry
	Offset      int64  `json:"offset"`
	InnerOffset int64  `json:"innerOffset"`
	ChunkOffset int64  `json:"chunkOffset"`
	ChunkSize   int64  `json:"chunkSize"`
	ChunkDigest string `json:"chunkDigest"`
}

// pendingChunk is a chunk whose compressed end is known only once the
// whole TOC has been read.
type pendingChunk struct {
	file  string // the regular file's name as the TOC spelled it
	chunk index.Chunk
}

// tocParser turns TOC entries, in order, into an index.
type tocParser struct {
	ctx        context.Context // of the parse, which it bounds
	feed       *index.Feed[*tocEntry]
	b          *index.Builder
	tocOffset  int64
	maxEntries int

	// Carried forward from earlier entries.
	userNames, groupNames map[int]string

	file       string // the regular file later "chunk" entries belong to
	fileSize   int64
	lastOffset int64 // the largest payload offset so far
	chunks     []pendingChunk

	prefetchEnd int64
	noPrefetch  bool
}

// tocResult is what the TOC says beyond the tree.
type tocResult struct {
	index       *index.Index
	prefetchEnd int64
	noPrefetch  bool
	badLandmark error
}

// ctxEvery is how many TOC entries are parsed between looks at the
// context.
const ctxEvery = 1024

// parseTOC parses the TOC JSON of a blob whose TOC member starts at
// tocOffset. Entries are decoded one at a time, so a hostile TOC is refused
// at its first bad entry and memory stays proportional to the valid ones.
// It stops with ctx's error when ctx is done.
func parseTOC(ctx context.Context, data string, tocOffset int64) (tocResult, error) {
	p := &tocParser{
		ctx:        ctx,
		tocOffset:  tocOffset,
		maxEntries: len(data)/minEntryJSON + entrySlack,
		userNames:  map[int]string{},
		groupNames: map[int]string{},
	}
	// Every unescaped string in the index is a substring of the document,
	// so entries cost no allocation per string. The price is that the
	// index keeps the whole document alive; most of its bytes (names and
	// digests) would be kept anyway.
	d := &tocDecoder{s: data}
	// Size the chunk list once. A real chunk entry spends more than 96
	// bytes (the digest alone is 71), so a document full of bare keys
	// cannot make this allocation large.
	p.chunks = make([]pendingChunk, 0, min(strings.Count(d.s, `"chunkDigest"`), len(data)/96))
	// eStargz writers give regular files only a size: IgnoreOtherSizes
	// stays false.
	p.b = index.NewBuilder(index.Limits{BlobEnd: tocOffset, MaxEntries: p.maxEntries, MaxInflateRatio: maxDeflateRatio})
	p.feed = index.NewFeed(ctx, (*tocEntry).names, p.add)
	version, sawEntries, err := decodeTOC(d, p.feed.Add)
	if err != nil {
		return tocResult{}, err
	}
	if version != 1 {
		return tocResult{}, fmt.Errorf("%w: TOC version %d, want 1", index.ErrInvalid, version)
	}
	if !sawEntries {
		return tocResult{}, fmt.Errorf("%w: TOC has no entries", index.ErrInvalid)
	}
	if err := p.addChunks(); err != nil {
		return tocResult{}, err
	}
	ix, err := p.b.Build(ctx)
	if err != nil {
		return tocResult{}, err
	}
	res := tocResult{index: ix, prefetchEnd: p.prefetchEnd, noPrefetch: p.noPrefetch}
	if res.prefetchEnd < 0 || res.prefetchEnd > tocOffset {
		// The prioritized files lie in the data region, before the TOC. A
		// landmark elsewhere is a broken or hostile hint: the layer is
		// still served, without prefetch.
		res.badLandmark = fmt.Errorf("%s at offset %d, outside the data region [0, %d]", PrefetchLandmark, res.prefetchEnd, tocOffset)
		res.prefetchEnd = 0
	}
	return res, nil
}

// decodeTOC walks {"version": N, "entries": [...]}, calls each for every
// entry in order and returns the version and whether an entries array was
// present. The entry passed to each is reused for the next one.
func decodeTOC(d *tocDecoder, each func(*tocEntry) error) (version int64, sawEntries bool, err error) {
	if d.null() {
		return 0, false, nil
	}
	if err := d.expect('{'); err != nil {
		return 0, false, err
	}
	for n := 0; ; n++ {
		key, ok, err := d.nextKey(n)
		if err != nil {
			return 0, false, err
		}
		if !ok {
			break
		}
		switch key {
		case "version":
			err = d.int64(&version)
		case "entries":
			if sawEntries {
				return 0, false, d.errorf("a second entries array")
			}
			sawEntries = !d.null()
			if sawEntries {
				err = decodeEntries(d, each)
			}
		default:
			err = d.skip(0)
		}
		if err != nil {
			return 0, false, err
		}
	}
	if d.skipSpace(); d.pos != len(d.s) {
		return 0, false, d.errorf("data after the TOC object")
	}
	return version, sawEntries, nil
}

func decodeEntries(d *tocDecoder, each func(*tocEntry) error) error {
	if err := d.expect('['); err != nil {
		return err
	}
	if d.consume(']') {
		return nil
	}
	var e tocEntry
	for {
		e = tocEntry{}
		if err := d.entry(&e); err != nil {
			return err
		}
		if err := each(&e); err != nil {
			return err
		}
		if !d.consume(',') {
			return d.expect(']')
		}
	}
}

// names returns the names of e that index.CheckNames checks.
func (e *tocEntry) names() (name, link string) { return e.Name, e.LinkName }

// add feeds one TOC entry, its names checked (p.feed), to the builder.
func (p *tocParser) add(e *tocEntry) error {
	if e.Type == "chunk" {
		return p.addChunkEntry(e)
	}
	p.file = ""
	p.carryNames(e)
	if e.Type == "hardlink" {
		return p.b.AddHardlink(e.Name, e.LinkName)
	}
	typ, err := p.b.AddTOC(&e.TOCEntry)
	if err != nil {
		return err
	}
	if typ != index.TypeReg {
		return nil
	}
	p.landmark(e)
	if e.Size == 0 {
		return nil
	}
	p.file, p.fileSize = e.Name, e.Size
	return p.queueChunk(e)
}

// carryNames fills userName and groupName, which writers give only on
// the first entry with a given uid or gid.
func (p *tocParser) carryNames(e *tocEntry) {
	if e.UserName != "" {
		p.userNames[e.UID] = e.UserName
	} else {
		e.UserName = p.userNames[e.UID]
	}
	if e.GroupName != "" {
		p.groupNames[e.GID] = e.GroupName
	} else {
		e.GroupName = p.groupNames[e.GID]
	}
}

// landmark records the prefetch landmarks, which live at the root.
func (p *tocParser) landmark(e *tocEntry) {
	if !strings.HasSuffix(e.Name, "prefetch.landmark") {
		return
	}
	switch name, _ := index.Clean(e.Name); name {
	case PrefetchLandmark:
		p.prefetchEnd = e.Offset
	case NoPrefetchLandmark:
		p.noPrefetch = true
	}
}

// addChunkEntry handles a "chunk" entry: the next piece of the regular
// file before it.
func (p *tocParser) addChunkEntry(e *tocEntry) error {
	if err := index.CheckChunkName(e.Name, p.file); err != nil {
		return err
	}
	return p.queueChunk(e)
}

// queueChunk checks a reg or chunk entry's payload fields and keeps the
// chunk until the compressed ends are known.
func (p *tocParser) queueChunk(e *tocEntry) error {
	switch {
	case e.Offset < 0 || e.Offset >= p.tocOffset:
		return fmt.Errorf("%w: %q: payload offset %d outside [0, %d)", index.ErrInvalid, p.file, e.Offset, p.tocOffset)
	case e.Offset < p.lastOffset:
		return fmt.Errorf("%w: %q: payload offset %d before the previous one, %d", index.ErrInvalid, p.file, e.Offset, p.lastOffset)
	case e.InnerOffset < 0, e.ChunkOffset < 0, e.ChunkSize < 0:
		return fmt.Errorf("%w: %q: negative chunk field", index.ErrInvalid, p.file)
	case e.ChunkOffset > p.fileSize:
		return fmt.Errorf("%w: %q: chunk offset %d past the file size %d", index.ErrInvalid, p.file, e.ChunkOffset, p.fileSize)
	case e.ChunkDigest == "":
		// Without a chunk digest the content cannot be verified; such a
		// layer is refused rather than served unverified.
		return fmt.Errorf("%w: %q: chunk at %d has no chunkDigest", index.ErrInvalid, p.file, e.ChunkOffset)
	}
	size := e.ChunkSize
	if size == 0 {
		size = p.fileSize - e.ChunkOffset // "to the end of the file"
	}
	p.lastOffset = e.Offset
	p.chunks = append(p.chunks, pendingChunk{file: p.file, chunk: index.Chunk{
		Offset:           e.ChunkOffset,
		Size:             size,
		CompressedOffset: e.Offset,
		InnerOffset:      e.InnerOffset,
		Digest:           digest.Digest(e.ChunkDigest),
	}})
	return nil
}

// addChunks sets every chunk's compressed end and hands it to the builder.
//
// A chunk's gzip member ends where the next member starts. Members start
// at strictly increasing offsets (checked in queueChunk), and chunks packed
// into one member (innerOffset) share its offset, so the end is the next
// larger offset, or the TOC for the last member.
func (p *tocParser) addChunks() error {
	end, cur := p.tocOffset, int64(-1)
	for i := len(p.chunks) - 1; i >= 0; i-- {
		c := &p.chunks[i].chunk
		if c.CompressedOffset != cur {
			if cur >= 0 {
				end = cur
			}
			cur = c.CompressedOffset
		}
		c.CompressedEnd = end
	}
	for i := range p.chunks {
		if i%ctxEvery == 0 && p.ctx.Err() != nil {
			return p.ctx.Err()
		}
		pc := &p.chunks[i]
		if err := p.b.AddChunk(pc.file, pc.chunk); err != nil {
			return err
		}
	}
	return nil
}
