// SPDX-License-Identifier: Apache-2.0

package store

import (
	"bytes"
	"runtime"
	"slices"
	"sync"

	"github.com/stargz-store/stargz-store/store/remote"
)

// A fetch decodes its chunks while the answer is still arriving: each
// chunk whose compressed bytes are all in goes to a decoding goroutine (at
// most GOMAXPROCS decode at once), is kept as soon as it is verified (a
// read arriving then finds it), and the read that asked for the first
// chunk gets it at once instead of after the read-ahead behind it. What
// could not be decoded on the way (bytes reported only at the end, or a
// chunk that failed verification with bytes of an attempt that was then
// retried) is decoded from the final buffers when the answer is complete.
// A prefetch of 4.7 MB spent 56 ms decoding after its last byte; a cold
// exec of python3.11 waited for both its 4 MiB chunks.

// decoding is the decode of the chunks of one piece of a fetch.
type decoding struct {
	l     *Layer
	refs  []chunkRef
	spans []remote.Span
	bufs  [][]byte
	kind  fetchKind
	to    *handoff // gets refs[0]'s verified data when it is decoded on the way; may be nil
	mem   *grant   // the memory of the piece, held by the cache writes of its chunks
	sem   chan struct{}
	wg    sync.WaitGroup

	// Per span, touched only by the goroutine reading that span.
	order [][]int // indexes into refs, by compressed end
	next  []int   // how many of order[i] are scheduled

	// Per chunk, written by its decoding goroutine, read after wg.Wait.
	datas [][]byte
	errs  []error
	kept  []bool
}

func newDecoding(l *Layer, refs []chunkRef, spans []remote.Span, bufs [][]byte, kind fetchKind, to *handoff, mem *grant) *decoding {
	d := &decoding{l: l, refs: refs, spans: spans, bufs: bufs, kind: kind, to: to, mem: mem,
		sem:   make(chan struct{}, max(1, runtime.GOMAXPROCS(0))),
		order: make([][]int, len(spans)), next: make([]int, len(spans)),
		datas: make([][]byte, len(refs)), errs: make([]error, len(refs)), kept: make([]bool, len(refs))}
	for k, r := range refs {
		j := remote.SpanOf(spans, r.chunk().CompressedOffset)
		d.order[j] = append(d.order[j], k)
	}
	for _, o := range d.order {
		slices.SortStableFunc(o, func(a, b int) int {
			return int(min(max(refs[a].chunk().CompressedEnd-refs[b].chunk().CompressedEnd, -1), 1))
		})
	}
	return d
}

// fill is the remote.Fill of the fetch: bufs[i][:n] are in. Background
// fetches decode at the end only: they are not waited for, and their
// decoding would take CPU from reads.
func (d *decoding) fill(i int, n int64) {
	if d.kind == fetchBackground {
		return
	}
	end := d.spans[i].Off + n
	for d.next[i] < len(d.order[i]) {
		k := d.order[i][d.next[i]]
		c := d.refs[k].chunk()
		if c.CompressedEnd > end {
			return
		}
		d.next[i]++
		// A copy: a retried request rewrites the buffer.
		comp := bytes.Clone(d.bufs[i][c.CompressedOffset-d.spans[i].Off : c.CompressedEnd-d.spans[i].Off])
		d.wg.Go(func() {
			d.sem <- struct{}{}
			defer func() { <-d.sem }()
			d.decodeOne(k, comp)
		})
	}
}

// decodeOne decodes chunk k on the way and, when it is verified, keeps
// it and hands it on.
func (d *decoding) decodeOne(k int, comp []byte) {
	c := d.refs[k].chunk()
	data := make([]byte, c.Size)
	if err := d.l.fmt.decode(data, comp, c); err != nil {
		d.errs[k] = err // decoded again from the final bytes
		return
	}
	d.datas[k] = data
	refs, datas := []chunkRef{d.refs[k]}, [][]byte{data}
	d.l.keep(refs, datas, d.kind, d.mem)
	d.kept[k] = true
	if k == 0 && d.to != nil {
		d.to.give(data, nil)
	}
	d.l.speculateELF(refs, datas)
}

// parallelDecode is the uncompressed size from which the chunks left for
// the end are decoded on all CPUs.
const parallelDecode = 1 << 20

// finish waits for the decodes on the way and decodes, from the complete
// buffers, every chunk they did not verify. It returns each chunk's data
// or error.
func (d *decoding) finish() ([][]byte, []error) {
	d.wg.Wait()
	var left []int
	var size int64
	for k := range d.refs {
		if d.datas[k] == nil {
			left = append(left, k)
			size += d.refs[k].chunk().Size
		}
	}
	one := func(k int) {
		c := d.refs[k].chunk()
		j := remote.SpanOf(d.spans, c.CompressedOffset)
		d.datas[k] = make([]byte, c.Size)
		d.errs[k] = d.l.fmt.decode(d.datas[k], d.bufs[j][c.CompressedOffset-d.spans[j].Off:c.CompressedEnd-d.spans[j].Off], c)
	}
	if size < parallelDecode || len(left) < 2 {
		for _, k := range left {
			one(k)
		}
		return d.datas, d.errs
	}
	var wg sync.WaitGroup
	for _, k := range left {
		wg.Go(func() {
			d.sem <- struct{}{}
			defer func() { <-d.sem }()
			one(k)
		})
	}
	wg.Wait()
	return d.datas, d.errs
}
