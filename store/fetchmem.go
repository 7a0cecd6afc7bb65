// SPDX-License-Identifier: Apache-2.0

package store

import (
	"cmp"
	"context"
	"slices"
	"sync/atomic"

	"github.com/stargz-store/stargz-store/internal/limit"
	"github.com/stargz-store/stargz-store/store/index"
	"github.com/stargz-store/stargz-store/store/remote"
)

// Fetch memory. The sizes a fetch allocates come from the TOC: the
// compressed ranges it reads and the decoded size of every chunk. So no
// fetch allocates for more than a piece at a time:
//
//   - a piece is a run of a fetch's chunks (in blob order) whose merged
//     compressed ranges, holes included, hold at most pieceLimits.span
//     bytes (16 MiB) and whose buffers (below) weigh at most
//     pieceLimits.weight (112 MiB): a piece is one range request, and a
//     fetch of several pieces sends them one after the other, the piece
//     holding the chunk a read waits for first. A chunk bigger than that
//     is a piece of its own.
//   - before a piece allocates anything it takes its weight from the
//     fetch budget its layer shares with the Manager's other layers
//     (Options.MaxFetchMemory, 256 MiB): the compressed buffers, the
//     copies the decoders take of them, a part of a multi-range answer,
//     and every decoded chunk. The weight goes back when the piece's
//     buffers are dropped and the cache writes it started are done (a
//     decoded chunk is then in the cache, or in the memory LRU, which
//     has its own bound).
//   - file reads may take the whole budget; the prefetch, speculative
//     and background fetches only half of it, and wait behind reads
//     (internal/limit). A piece heavier than its class may hold takes
//     all of it and runs alone: it waits, never forever.
//   - no chunk is larger than a piece can hold: store/index refuses a
//     TOC with a chunk that decodes more than index.MaxChunkSize or
//     spans more than index.MaxCompressedChunk, or lies outside the
//     blob's data, and storage then pulls the layer normally.
//
// So the bytes fetches hold are at most MaxFetchMemory, or one piece of
// a single chunk (at most 2*index.MaxCompressedChunk+index.MaxChunkSize
// = 224 MiB) when the budget is smaller than that. With the defaults a 4.7 MB prefetch, a
// read with its read-ahead and a background batch are each one piece, as
// before: only regions larger than a piece take more requests.

const (
	// defaultFetchMemory is Options.MaxFetchMemory's default.
	defaultFetchMemory = 256 << 20
	// maxPieceSpan bounds the compressed bytes of one piece: one range
	// request.
	maxPieceSpan = 16 << 20
	// minPiece is the smallest piece a small budget makes.
	minPiece = 64 << 10
)

// fetchBudget is the memory a Manager's fetches may hold at once.
type fetchBudget struct {
	lim *limit.Limiter
	// pieces is how fetches sharing the budget are cut.
	pieces pieceLimits
}

// newFetchBudget returns a budget of n bytes, half of which background
// work (prefetch, speculative and background fetches) may use.
func newFetchBudget(n int64) *fetchBudget {
	return &fetchBudget{lim: limit.New(n, n/2), pieces: limitsFor(n)}
}

// pieceLimits bound one piece of a fetch.
type pieceLimits struct {
	span   int64 // compressed bytes, holes between merged ranges included
	weight int64 // planWeight
}

// limitsFor returns the pieces of a budget of n bytes: a piece weighs
// less than the half background work may use, so that two fit.
func limitsFor(n int64) pieceLimits {
	return pieceLimits{span: max(minPiece, min(maxPieceSpan, n/16)), weight: max(4*minPiece, n*7/16)}
}

// piece is a part of a fetch that is read with one request.
type piece struct {
	// refs are its chunks: the fetch's first chunk first if the piece
	// holds it, the others in blob order.
	refs  []chunkRef
	spans []remote.Span // the merged compressed ranges, sorted
}

// planPieces cuts the chunks of a fetch into pieces within lim, merging
// compressed ranges less than gap apart. The piece holding refs[0] comes
// first, the others in blob order.
func planPieces(refs []chunkRef, gap int64, lim pieceLimits) []piece {
	order := make([]int, len(refs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Compare(refs[a].chunk().CompressedOffset, refs[b].chunk().CompressedOffset)
	})
	var out []piece
	var p planned
	lead := 0
	for _, i := range order {
		if !p.fits(refs[i].chunk(), gap, lim) {
			out = append(out, p.piece)
			p = planned{}
		}
		if i == 0 {
			lead = len(out)
		}
		p.add(refs[i], gap)
	}
	out = append(out, p.piece)
	// The first chunk leads its piece, and its piece leads the fetch.
	lp := out[lead]
	j := slices.Index(lp.refs, refs[0])
	copy(lp.refs[1:j+1], lp.refs[:j])
	lp.refs[0] = refs[0]
	copy(out[1:lead+1], out[:lead])
	out[0] = lp
	return out
}

// planned is a piece being planned, with what it costs so far.
type planned struct {
	piece
	span   int64 // sum of the spans' lengths
	weight int64 // planWeight so far
}

// grow returns how many compressed bytes adding c adds to the piece.
func (p *planned) grow(c index.Chunk, gap int64) int64 {
	if n := len(p.spans); n > 0 && c.CompressedOffset <= p.spans[n-1].End+gap {
		return max(0, c.CompressedEnd-p.spans[n-1].End)
	}
	return c.CompressedEnd - c.CompressedOffset
}

// planWeight is what adding c with grow new compressed bytes adds to a
// piece's weight, at most: the compressed bytes twice (buffer and the
// largest part of an answer), the chunk's copy for its decoder and its
// decoded bytes.
func planWeight(c index.Chunk, grow int64) int64 {
	return 2*grow + (c.CompressedEnd - c.CompressedOffset) + c.Size
}

// fits reports whether c may join the piece; an empty piece takes any.
func (p *planned) fits(c index.Chunk, gap int64, lim pieceLimits) bool {
	if len(p.refs) == 0 {
		return true
	}
	g := p.grow(c, gap)
	return p.span+g <= lim.span && p.weight+planWeight(c, g) <= lim.weight
}

// add adds r to the piece.
func (p *planned) add(r chunkRef, gap int64) {
	c := r.chunk()
	g := p.grow(c, gap)
	p.span += g
	p.weight += planWeight(c, g)
	p.refs = append(p.refs, r)
	if n := len(p.spans); n > 0 && c.CompressedOffset <= p.spans[n-1].End+gap {
		p.spans[n-1].End = max(p.spans[n-1].End, c.CompressedEnd)
		return
	}
	p.spans = append(p.spans, remote.Span{Off: c.CompressedOffset, End: c.CompressedEnd})
}

// weight returns the bytes a piece holds while it is fetched by a fetch
// of kind: its compressed buffers; unless it is background work, which
// decodes at the end, a copy of each chunk's compressed bytes for the
// decoders on the way; a part of a multi-range answer; and the decoded
// chunks.
func (p piece) weight(kind fetchKind) int64 {
	var n, largest int64
	for _, s := range p.spans {
		n += s.Len()
		largest = max(largest, s.Len())
	}
	if len(p.spans) > 1 {
		n += largest
	}
	for _, r := range p.refs {
		c := r.chunk()
		n += c.Size
		if kind != fetchBackground {
			n += c.CompressedEnd - c.CompressedOffset
		}
	}
	return n
}

// take waits until the budget has room for a piece of weight n of a
// fetch of kind, and takes it. Only file reads are on-demand here: the
// prefetch, speculative and background fetches are background work.
func (b *fetchBudget) take(ctx context.Context, kind fetchKind, n int64) (*grant, error) {
	cls := limit.Background
	if kind == fetchRead {
		cls = limit.OnDemand
	}
	got, err := b.lim.Acquire(ctx, cls, n)
	if err != nil {
		return nil, err
	}
	g := &grant{lim: b.lim, cls: cls, n: got}
	g.holders.Store(1)
	return g, nil
}

// grant is the memory one piece took from the budget. It goes back when
// the piece and every cache write holding its chunks are done.
type grant struct {
	lim     *limit.Limiter
	cls     limit.Class
	n       int64
	holders atomic.Int32 // the piece, and its cache writes running
}

// hold marks one more holder of the piece's memory.
func (g *grant) hold() { g.holders.Add(1) }

// done ends one holder; the last gives the memory back.
func (g *grant) done() {
	if g.holders.Add(-1) == 0 {
		g.lim.Release(g.cls, g.n)
	}
}
