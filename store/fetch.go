// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/stargz-store/stargz-store/store/remote"
)

// fetchKind says who asked for a fetch: a file read (on-demand priority,
// counts as a read of the layer), the prefetch a lookup waits for
// (on-demand priority, not a read) or the background fetch.
type fetchKind int

const (
	fetchRead fetchKind = iota
	fetchPrefetch
	fetchBackground
)

// rangeReader reads several blob ranges at once (registryBlob does it
// with one multi-range request). BlobReaders without it are read range by
// range.
type rangeReader interface {
	readRanges(ctx context.Context, spans []remote.Span, bufs [][]byte, kind fetchKind, fill remote.Fill) error
}

// mergeGap is the largest hole between two compressed ranges that is
// fetched rather than split into two ranges.
const mergeGap = 16 << 10

// chunk returns the verified content of chunk r, which is not a run of
// zeros, fetching it once however many read it at the same time. This is
// where a read is de-duplicated: when another fetch has claimed r (a
// read's, the prefetch, a guess or the background fetch), the read waits
// for that claim to end and looks again; otherwise it claims r, plans
// what to bring along, and runs the fetch detached (fetchDetached). A
// fetch that failed leaves r unclaimed: the next look claims it.
func (l *Layer) chunk(ctx context.Context, r chunkRef) ([]byte, error) {
	for {
		if data, ok := l.lookup(r); ok {
			return data, nil
		}
		c, busy := l.fetches.claimLead(r)
		if busy == nil {
			// A fetch may have kept r and ended between the look
			// and the claim.
			if data, ok := l.lookup(r); ok {
				l.fetches.release(c)
				return data, nil
			}
			return l.fetchDetached(ctx, l.planRead(c))
		}
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// planRead adds to c, a read's claim on the chunk it reads, what the
// fetch brings along: its member siblings, the read-ahead (readahead.go)
// and the small files of its directory (speculate.go), those that no
// other fetch has.
func (l *Layer) planRead(c claim) claim {
	r := c.refs[0]
	ahead := l.ahead.window(r)
	refs, next := l.plan(r, ahead)
	refs = append(refs, l.siblings(r, refs)...)
	l.ahead.record(r.e.ID, seqState{next: next, window: ahead})
	return l.fetches.extend(c, refs[1:])
}

// fetchDetached runs a read's fetch of the chunks it claimed, c.refs[0]
// the one it reads, on a goroutine of the layer and on the layer's
// context: a reader that gives up (a kernel interrupt, its ReadTimeout)
// never aborts a fetch that others wait for on its claims. The reader
// waits with its own ctx for its chunk alone, which it gets as soon as
// that chunk is verified, before the read-ahead behind it has arrived (a
// cold exec of a 7 MB program waited for both its 4 MiB chunks).
func (l *Layer) fetchDetached(ctx context.Context, c claim) ([]byte, error) {
	h := &handoff{done: make(chan struct{})}
	l.fetches.readStarted()
	started := l.spawn(func() {
		data, err := l.fetchRefs(l.ctx, c, fetchRead, 0, h)
		l.fetches.readEnded()
		h.give(data, err)
	})
	if !started {
		l.fetches.readEnded()
		l.fetches.release(c)
		return nil, fmt.Errorf("layer %s is closing: %w", l.desc.Digest, context.Canceled)
	}
	select {
	case <-h.done:
		return h.data, h.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// handoff is where a read's fetch hands its reader the chunk it reads:
// the first give, its verified data as soon as it is in or the fetch's
// outcome, closes done; later ones are dropped.
type handoff struct {
	once sync.Once
	done chan struct{}
	data []byte // set before done is closed
	err  error
}

func (h *handoff) give(data []byte, err error) {
	h.once.Do(func() {
		h.data, h.err = data, err
		close(h.done)
	})
}

// fetchRefs fetches the chunks of claim c, in pieces (fetchmem.go) of
// one request each (several ranges in a multi-range request), decodes and
// verifies every chunk and keeps it. It ends c: each piece's claim when
// the piece ends (fetchBook.split). It returns the data of c.refs[0]; a
// chunk other than c.refs[0] that fails is logged and left out. h, if
// not nil, gets c.refs[0]'s verified data as soon as it has arrived,
// before the rest.
func (l *Layer) fetchRefs(ctx context.Context, c claim, kind fetchKind, gap int64, h *handoff) ([]byte, error) {
	if len(c.refs) == 0 {
		l.fetches.release(c)
		return nil, nil
	}
	if gap == 0 {
		gap = mergeGap
	}
	pieces := planPieces(c.refs, gap, l.mem.pieces)
	claims := []claim{c}
	if len(pieces) > 1 {
		claims = l.fetches.split(c, pieces)
	}
	var lead []byte
	var st fetchStats
	for i, p := range pieces {
		var to *handoff
		if i == 0 {
			to = h
		}
		data, err := l.fetchPiece(ctx, p, kind, to, i == 0, &st)
		l.fetches.release(claims[i])
		if err != nil {
			for _, rest := range claims[i+1:] {
				l.fetches.release(rest)
			}
			return nil, err
		}
		if i == 0 {
			lead = data
			if h != nil && len(pieces) > 1 {
				h.give(data, nil) // the reader need not wait for the other pieces
			}
		}
	}
	r := c.refs[0]
	l.log.Debug("chunks fetched", "digest", l.desc.Digest.String(), "path", r.e.Name,
		"off", r.chunk().Offset, "chunks", len(c.refs), "pieces", len(pieces), "ranges", st.ranges, "bytes", st.bytes)
	return lead, nil
}

// fetchStats counts what a fetch read.
type fetchStats struct {
	ranges int
	bytes  int64 // compressed bytes of the chunks kept
}

// fetchPiece fetches one piece: it takes the piece's memory from the
// budget before allocating, reads the piece's ranges, decodes and
// verifies every chunk and keeps them. When lead is set (the piece holds
// the fetch's first chunk, p.refs[0]) it returns that chunk's data, or
// its error; another chunk that fails is logged and left out. h, if not
// nil, gets the lead chunk's data as soon as it is verified.
func (l *Layer) fetchPiece(ctx context.Context, p piece, kind fetchKind, h *handoff, lead bool, st *fetchStats) ([]byte, error) {
	c0 := p.refs[0].chunk()
	mem, err := l.mem.take(ctx, kind, p.weight(kind))
	if err != nil {
		return nil, fmt.Errorf("fetch chunk %d of %s: %w", c0.Offset, p.refs[0].e.Name, err)
	}
	defer mem.done()
	bufs := make([][]byte, len(p.spans))
	for i, s := range p.spans {
		bufs[i] = make([]byte, s.Len())
	}
	dec := newDecoding(l, p.refs, p.spans, bufs, kind, h, mem)
	if err := l.readSpans(ctx, p.spans, bufs, kind, dec.fill); err != nil {
		dec.wg.Wait() // what was verified on the way is kept
		return nil, fmt.Errorf("fetch chunk %d of %s: %w", c0.Offset, p.refs[0].e.Name, err)
	}
	st.ranges += len(p.spans)
	return l.settle(p, dec, kind, lead, st)
}

// readSpans reads the spans through the blob, in one request when it can.
func (l *Layer) readSpans(ctx context.Context, spans []remote.Span, bufs [][]byte, kind fetchKind, fill remote.Fill) error {
	if rr, ok := l.blob.(rangeReader); ok {
		return rr.readRanges(ctx, spans, bufs, kind, fill)
	}
	for i, s := range spans {
		n, err := l.blob.ReadAt(ctx, bufs[i], s.Off)
		if err != nil && !(errors.Is(err, io.EOF) && n == len(bufs[i])) {
			return err
		}
		fill.Done(i, s.Len())
	}
	return nil
}

// settle ends a piece once its answer is complete: it decodes what was
// not decoded on the way, keeps the verified chunks not kept yet and
// looks for ELF heads among them. With lead it returns p.refs[0]'s data
// or error; other chunks that fail are logged and left out.
func (l *Layer) settle(p piece, dec *decoding, kind fetchKind, lead bool, st *fetchStats) ([]byte, error) {
	datas, errs := dec.finish()
	var leadData []byte
	var kept, keep []chunkRef
	var keptData, keepData [][]byte
	for i, r := range p.refs {
		c := r.chunk()
		if err := errs[i]; err != nil {
			err = fmt.Errorf("chunk %d of %s: %w", c.Offset, r.e.Name, err)
			if i == 0 && lead {
				return nil, err
			}
			l.log.Warn("chunk failed verification", "digest", l.desc.Digest.String(), "err", err)
			continue
		}
		if i == 0 && lead {
			leadData = datas[i]
		}
		kept, keptData = append(kept, r), append(keptData, datas[i])
		if !dec.kept[i] { // not kept on the way
			keep, keepData = append(keep, r), append(keepData, datas[i])
		}
		st.bytes += c.CompressedEnd - c.CompressedOffset
	}
	l.keep(keep, keepData, kind, dec.mem)
	if kind != fetchBackground {
		l.speculateELF(kept, keptData)
	}
	return leadData, nil
}
