// SPDX-License-Identifier: Apache-2.0

package zstdchunked

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store/index"
)

const (
	// minEntryJSON and entrySlack bound the entries (implicit directories
	// included) an index may get from a TOC of a given size, as in package
	// estargz: one per 32 bytes of JSON, plus the slack.
	minEntryJSON = 32
	entrySlack   = 1 << 16
	// zeroPiece is the largest Zero chunk put in the index. Zero chunks
	// cost no fetch, but a reader materialises a whole chunk, so long runs
	// of zeros (sparse files) are cut into pieces of this size.
	zeroPiece = 4 << 20
	// maxZeroPieces bounds the Zero chunks of one layer (1 TiB of zeros):
	// a TOC may claim any size for a zeros chunk.
	maxZeroPieces = 1 << 18

	chunkTypeData  = ""
	chunkTypeZeros = "zeros"
)

// tocEntry is one element of the TOC's "entries" array, the fields of
// containers/storage's minimal.FileMetadata that the index needs (that
// package is internal): those eStargz spells alike (index.TOCEntry), with
// the xattr values still base64, and zstd:chunked's payload fields.
// accesstime and changetime are not kept.
type tocEntry struct {
	index.TOCEntry
	Xattrs      map[string]string `json:"xattrs"` // decoded into TOCEntry.Xattrs
	Offset      int64             `json:"offset"`
	EndOffset   int64             `json:"endOffset"`
	ChunkSize   int64             `json:"chunkSize"`
	ChunkOffset int64             `json:"chunkOffset"`
	ChunkDigest string            `json:"chunkDigest"`
	ChunkType   string            `json:"chunkType"`
}

// tocParser turns TOC entries, in order, into an index.
type tocParser struct {
	ctx   context.Context // of the parse, which it bounds
	feed  *index.Feed[*tocEntry]
	b     *index.Builder // its Limits.BlobEnd keeps chunks before the TOC
	zeros int            // Zero chunks added

	// file is the regular file being read: its reg entry and the chunk
	// entries after it, added when the next file starts.
	file []tocEntry
}

// ctxEvery is how many TOC entries are parsed between looks at the
// context.
const ctxEvery = 1024

// parseTOC parses the TOC JSON of a blob whose chunks all end at or before
// blobEnd. Entries are decoded one at a time, so a hostile TOC is refused
// at its first bad entry and memory stays proportional to the valid ones.
// It also returns the TOC's tarSplitDigest, if any. It stops with ctx's
// error when ctx is done.
func parseTOC(ctx context.Context, data []byte, blobEnd int64) (*index.Index, digest.Digest, error) {
	p := &tocParser{ctx: ctx}
	p.b = index.NewBuilder(index.Limits{BlobEnd: blobEnd, MaxEntries: len(data)/minEntryJSON + entrySlack,
		// containers/storage copies every tar header's size, which tar
		// ignores on header-only entries.
		IgnoreOtherSizes: true})
	p.feed = index.NewFeed(ctx, (*tocEntry).names, p.add)
	version, tarSplit, err := decodeDocument(json.NewDecoder(bytes.NewReader(data)), p.feed.Add)
	if err != nil {
		return nil, "", err
	}
	if version != 1 {
		return nil, "", fmt.Errorf("%w: TOC version %d, want 1", index.ErrInvalid, version)
	}
	if err := p.flushFile(); err != nil {
		return nil, "", p.feed.Err(err)
	}
	ix, err := p.b.Build(ctx)
	return ix, digest.Digest(tarSplit), err
}

// decodeDocument walks {"version": N, "entries": [...], "tarSplitDigest":
// D}, calls each for every entry in order, and returns the version and
// D. Other keys are skipped; a second entries array or data after the
// object is an error.
func decodeDocument(d *json.Decoder, each func(*tocEntry) error) (version int64, tarSplit string, err error) {
	if err := expectDelim(d, '{'); err != nil {
		return 0, "", err
	}
	sawEntries := false
	for d.More() {
		t, err := d.Token()
		if err != nil {
			return 0, "", invalidJSON(err)
		}
		switch key, _ := t.(string); key {
		case "version":
			err = d.Decode(&version)
		case "tarSplitDigest":
			err = d.Decode(&tarSplit)
		case "entries":
			if sawEntries {
				return 0, "", fmt.Errorf("%w: a second entries array", index.ErrInvalid)
			}
			sawEntries = true
			err = decodeEntries(d, each)
		default:
			var skip json.RawMessage
			err = d.Decode(&skip)
		}
		if err != nil {
			return 0, "", invalidJSON(err)
		}
	}
	if err := expectDelim(d, '}'); err != nil {
		return 0, "", err
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return 0, "", fmt.Errorf("%w: data after the TOC object", index.ErrInvalid)
	}
	if !sawEntries {
		return 0, "", fmt.Errorf("%w: TOC has no entries", index.ErrInvalid)
	}
	return version, tarSplit, nil
}

func decodeEntries(d *json.Decoder, each func(*tocEntry) error) error {
	if err := expectDelim(d, '['); err != nil {
		return err
	}
	for d.More() {
		var e tocEntry
		if err := d.Decode(&e); err != nil {
			return err
		}
		if err := each(&e); err != nil {
			return err
		}
	}
	return expectDelim(d, ']')
}

func expectDelim(d *json.Decoder, want json.Delim) error {
	t, err := d.Token()
	if err != nil {
		return invalidJSON(err)
	}
	if t != want {
		return fmt.Errorf("%w: decode TOC JSON at byte %d: want %q", index.ErrInvalid, d.InputOffset(), want)
	}
	return nil
}

// invalidJSON classifies a JSON error as an invalid TOC, leaving errors
// that already are classified, and a done context's, alone.
func invalidJSON(err error) error {
	if errors.Is(err, index.ErrInvalid) || errors.Is(err, ErrTooLarge) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("%w: decode TOC JSON: %v", index.ErrInvalid, err)
}

// names returns the names of e that index.CheckNames checks.
func (e *tocEntry) names() (name, link string) { return e.Name, e.LinkName }

// add feeds one TOC entry, its names checked (p.feed), to the builder.
func (p *tocParser) add(e *tocEntry) error {
	// Every entry's xattrs are decoded, as eStargz's decoder does, though
	// only files keep them.
	xattrs, err := decodeXattrs(e.Xattrs)
	if err != nil {
		return fmt.Errorf("%q: %w", e.Name, err)
	}
	if e.Type == "chunk" {
		file := ""
		if len(p.file) > 0 {
			file = p.file[0].Name
		}
		if err := index.CheckChunkName(e.Name, file); err != nil {
			return err
		}
		e.Xattrs = nil
		p.file = append(p.file, *e)
		return nil
	}
	if err := p.flushFile(); err != nil {
		return err
	}
	if e.Type == "hardlink" {
		return p.b.AddHardlink(e.Name, e.LinkName)
	}
	e.TOCEntry.Xattrs = xattrs
	typ, err := p.b.AddTOC(&e.TOCEntry)
	if err != nil {
		return err
	}
	if typ == index.TypeReg && e.Size > 0 {
		e.Xattrs, e.TOCEntry.Xattrs = nil, nil
		p.file = append(p.file, *e)
	}
	return nil
}

// decodeXattrs decodes the base64 values containers/storage writes.
func decodeXattrs(in map[string]string) (map[string][]byte, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make(map[string][]byte, len(in))
	for k, v := range in {
		b, err := index.DecodeXattr(k, v)
		if err != nil {
			return nil, err
		}
		out[k] = b
	}
	return out, nil
}

// flushFile adds the chunks of the regular file read last.
func (p *tocParser) flushFile() error {
	if len(p.file) == 0 {
		return nil
	}
	defer func() { p.file = p.file[:0] }()
	f := &p.file[0]
	if len(p.file) == 1 && f.ChunkDigest == "" && f.ChunkType == chunkTypeData {
		// One chunk, the whole file, vouched for by the file's digest.
		if f.Digest == "" {
			return fmt.Errorf("%w: %q has neither digest nor chunkDigest", index.ErrInvalid, f.Name)
		}
		return p.addChunk(f.Name, index.Chunk{
			Offset: 0, Size: f.Size,
			CompressedOffset: f.Offset, CompressedEnd: f.EndOffset,
			Digest: digest.Digest(f.Digest),
		}, chunkTypeData)
	}
	for i := range p.file {
		c := &p.file[i]
		end, nextOff := f.EndOffset, f.Size
		if i+1 < len(p.file) {
			end, nextOff = p.file[i+1].Offset, p.file[i+1].ChunkOffset
		}
		size := c.ChunkSize
		if size == 0 {
			size = nextOff - c.ChunkOffset // "to the next chunk"
		}
		if c.ChunkType == chunkTypeData && c.ChunkDigest == "" {
			// Without a chunk digest the content cannot be verified; such a
			// layer is refused rather than served unverified.
			return fmt.Errorf("%w: %q: chunk at %d has no chunkDigest", index.ErrInvalid, f.Name, c.ChunkOffset)
		}
		err := p.addChunk(f.Name, index.Chunk{
			Offset: c.ChunkOffset, Size: size,
			CompressedOffset: c.Offset, CompressedEnd: end,
			Digest: digest.Digest(c.ChunkDigest),
		}, c.ChunkType)
		if err != nil {
			return err
		}
	}
	return nil
}

// addChunk hands one chunk to the builder, which checks that chunks are
// contiguous, cover the file and lie inside the blob. Zero chunks are cut
// into pieces; their compressed ranges are never read.
func (p *tocParser) addChunk(name string, c index.Chunk, typ string) error {
	switch typ {
	case chunkTypeData:
		return p.b.AddChunk(name, c)
	case chunkTypeZeros:
		if c.Size <= 0 || c.Offset < 0 || c.Size > math.MaxInt64-c.Offset {
			return p.b.AddChunk(name, index.Chunk{Offset: c.Offset, Size: c.Size, Zero: true}) // refused there
		}
		for off, end := c.Offset, c.Offset+c.Size; off < end; off += zeroPiece {
			if p.zeros++; p.zeros > maxZeroPieces {
				return fmt.Errorf("%w: more than %d bytes of zero chunks", ErrTooLarge, int64(maxZeroPieces)*zeroPiece)
			}
			z := index.Chunk{Offset: off, Size: min(zeroPiece, end-off), Zero: true}
			if err := p.b.AddChunk(name, z); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("%w: %q: chunk at %d has unknown chunkType %q", index.ErrInvalid, name, c.Offset, typ)
}
