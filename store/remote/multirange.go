// SPDX-License-Identifier: Apache-2.0

package remote

import (
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// readMulti reads a 206 answer to a multi-range request: a
// multipart/byteranges body, or one range (the registry merged ours, or
// served the first only) with its Content-Range in the header. A body
// that breaks off is transient; an answer that is wrong (malformed,
// parts outside the ranges, bytes missing) is final and wraps
// errNoMultiRange: the blob is read one range per request from then on,
// which registries get right.
func readMulti(resp *http.Response, spans []Span, bufs [][]byte, fill Fill) error {
	body := &errTracker{r: resp.Body}
	pf := newPartFill(spans, bufs, fill)
	var err error
	if mt, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "multipart/byteranges" {
		err = pf.parts(multipart.NewReader(body, params["boundary"]))
	} else {
		err = pf.part(resp.Header.Get("Content-Range"), body)
	}
	if err == nil {
		err = pf.complete()
	}
	switch {
	case err == nil:
		return nil
	case body.err != nil:
		return transient(fmt.Errorf("read multi-range answer: %w", bodyErr(body.err)))
	}
	return &attemptError{err: fmt.Errorf("%w: %w", errNoMultiRange, err), final: true}
}

// errTracker remembers the first error other than io.EOF its reader
// returned: a multipart parser's error is the registry's doing only if
// the body itself did not fail.
type errTracker struct {
	r   io.Reader
	err error
}

func (t *errTracker) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) && t.err == nil {
		t.err = err
	}
	return n, err
}

// maxExtraParts bounds the parts of a multi-range answer beyond one per
// span, and maxPartBytes how many times the extent asked for (first to
// last byte) the parts may carry in all: duplicates and overlaps are
// tolerated, a registry sending the same part over and over is not.
const (
	maxExtraParts = 2
	maxPartBytes  = 2
)

// partFill copies the parts of a multi-range answer into the spans'
// buffers, trusting only each part's own Content-Range (registries may
// reorder, merge or overlap ranges). It tracks, per span, the byte
// intervals already filled: a byte is copied once (first part wins), so
// duplicate and overlapping parts never count twice, and a span is
// reported complete exactly when every byte of it has arrived.
type partFill struct {
	spans  []Span
	bufs   [][]byte
	report Fill
	cov    []coverage
	done   []bool
	nparts int
	bytes  int64 // carried by the parts so far
}

func newPartFill(spans []Span, bufs [][]byte, report Fill) *partFill {
	return &partFill{spans: spans, bufs: bufs, report: report,
		cov: make([]coverage, len(spans)), done: make([]bool, len(spans))}
}

// parts reads every part of a multipart answer.
func (f *partFill) parts(mr *multipart.Reader) error {
	for {
		p, err := mr.NextRawPart() // raw: no transfer decoding of blob bytes
		if err == io.EOF {         // exactly: a wrapped EOF is a body without its final boundary
			return nil
		}
		if err != nil {
			return fmt.Errorf("read multipart answer: %w", err)
		}
		if err := f.part(p.Header.Get("Content-Range"), p); err != nil {
			return err
		}
	}
}

// part copies one part, whose Content-Range is h, from body.
func (f *partFill) part(h string, body io.Reader) error {
	first, last, err := parseContentRange(h)
	if err != nil {
		return err
	}
	n := len(f.spans)
	lo, hi := f.spans[0].Off, f.spans[n-1].End
	f.nparts++
	f.bytes += last - first + 1
	switch {
	case first < lo || last >= hi || !f.overlaps(first, last+1):
		return fmt.Errorf("part Content-Range %q outside the ranges asked for", h)
	case f.nparts > n+maxExtraParts:
		return fmt.Errorf("more than %d parts for %d ranges", n+maxExtraParts, n)
	case f.bytes > maxPartBytes*(hi-lo):
		return fmt.Errorf("parts carry more than %d times the %d bytes asked for", maxPartBytes, hi-lo)
	}
	if err := f.copy(first, last+1, body); err != nil {
		return fmt.Errorf("part %q: %w", h, bodyErr(err))
	}
	if k, _ := io.CopyN(io.Discard, body, 1); k > 0 {
		return fmt.Errorf("part %q is longer than its Content-Range", h)
	}
	return nil
}

// overlaps reports whether [off, end) meets a span.
func (f *partFill) overlaps(off, end int64) bool {
	i := SpanOf(f.spans, off)
	return i < len(f.spans) && f.spans[i].Off < end
}

// copy reads blob bytes [off, end) from body into the spans they fall
// in, dropping bytes between spans and bytes a span already holds.
func (f *partFill) copy(off, end int64, body io.Reader) error {
	pos := off
	skip := func(to int64) error {
		_, err := io.CopyN(io.Discard, body, to-pos)
		pos = to
		return err
	}
	for pos < end {
		i := SpanOf(f.spans, pos)
		if i == len(f.spans) {
			return skip(end)
		}
		s := f.spans[i]
		if pos < s.Off {
			if err := skip(min(s.Off, end)); err != nil {
				return err
			}
			continue
		}
		to := min(s.End, end)
		for _, g := range f.cov[i].add(pos, to) {
			if err := skip(g.Off); err != nil {
				return err
			}
			if _, err := io.ReadFull(body, f.bufs[i][g.Off-s.Off:g.End-s.Off]); err != nil {
				return err
			}
			pos = g.End
		}
		if err := skip(to); err != nil {
			return err
		}
		if !f.done[i] && f.cov[i].total() == s.Len() {
			f.done[i] = true
			f.report.Done(i, s.Len())
		}
	}
	return nil
}

// complete checks that every span was filled.
func (f *partFill) complete() error {
	for i, s := range f.spans {
		if !f.done[i] {
			return fmt.Errorf("multi-range answer lacks bytes of %d-%d (%d of %d in)", s.Off, s.End-1, f.cov[i].total(), s.Len())
		}
	}
	return nil
}

// coverage is the part of a span an answer has filled: sorted, disjoint,
// non-adjacent intervals.
type coverage []Span

// add marks [lo, hi) covered and returns, in order, the pieces of it that
// were not covered before.
func (c *coverage) add(lo, hi int64) []Span {
	var fresh []Span
	pos := lo
	for _, x := range *c {
		if x.Off >= hi {
			break
		}
		if x.End <= pos {
			continue
		}
		if x.Off > pos {
			fresh = append(fresh, Span{pos, x.Off})
		}
		pos = x.End
	}
	if pos < hi {
		fresh = append(fresh, Span{pos, hi})
	}
	if len(fresh) == 0 {
		return nil
	}
	merged := Span{lo, hi}
	out := make(coverage, 0, len(*c)+1)
	for _, x := range *c {
		switch {
		case x.End < lo:
			out = append(out, x)
		case x.Off > hi:
			if merged.Len() > 0 {
				out = append(out, merged)
				merged = Span{}
			}
			out = append(out, x)
		default: // overlapping or adjacent
			merged = Span{min(merged.Off, x.Off), max(merged.End, x.End)}
		}
	}
	if merged.Len() > 0 {
		out = append(out, merged)
	}
	*c = out
	return fresh
}

// total is how many bytes c covers.
func (c coverage) total() int64 {
	var n int64
	for _, x := range c {
		n += x.Len()
	}
	return n
}

// parseContentRange parses "bytes <first>-<last>/<total or *>".
func parseContentRange(h string) (first, last int64, err error) {
	rest, ok := strings.CutPrefix(h, "bytes ")
	r, total, ok2 := strings.Cut(rest, "/")
	a, z, ok3 := strings.Cut(r, "-")
	if ok && ok2 && ok3 {
		first, err1 := strconv.ParseInt(a, 10, 64)
		last, err2 := strconv.ParseInt(z, 10, 64)
		_, err3 := strconv.ParseUint(total, 10, 63)
		if err1 == nil && err2 == nil && (err3 == nil || total == "*") && first >= 0 && last >= first && last < math.MaxInt64 {
			return first, last, nil
		}
	}
	return 0, 0, fmt.Errorf("bad Content-Range %q", h)
}

// SpanOf returns the index of the span of spans (sorted, disjoint)
// holding blob offset off, or of the first span after it.
func SpanOf(spans []Span, off int64) int {
	j, _ := slices.BinarySearchFunc(spans, off, func(s Span, off int64) int {
		switch {
		case s.End <= off:
			return -1
		case s.Off > off:
			return 1
		}
		return 0
	})
	return j
}
