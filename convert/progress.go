// SPDX-License-Identifier: Apache-2.0

package convert

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// progress reports what Image does on Options.Progress. Without bars it writes one line per
// finished step. With bars (a terminal) it keeps one live line per layer in flight below the
// finished lines and redraws them in place with ANSI escapes, at most every redrawEvery; a layer's
// line becomes a plain line when it finishes. It starts no goroutine: layer jobs redraw as they
// count bytes. A nil *progress or one without a writer prints nothing. It is safe for concurrent
// use.
type progress struct {
	bars bool

	// mu guards the fields below.
	mu       sync.Mutex
	w        io.Writer
	live     []*bar // bars drawn below the finished lines, in start order
	drawn    int    // lines of live bars on the screen
	lastDraw time.Time
}

// redrawEvery throttles redraws: enough to look live, cheap on a slow terminal.
const redrawEvery = 150 * time.Millisecond

func newProgress(w io.Writer, bars bool) *progress { return &progress{w: w, bars: bars} }

// printf writes one finished line; write errors are ignored, progress is best effort.
func (p *progress) printf(format string, args ...any) {
	if p == nil || p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
	_, _ = fmt.Fprintf(p.w, format, args...)
	p.drawLocked()
}

// bar is the live state of one layer. Its methods are safe on a nil *bar.
type bar struct {
	p     *progress
	label string
	// The fields below are guarded by p.mu.
	phase       string
	done, total int64
}

// start adds a bar for a layer; label names it (for example "layer 2/5 sha256:1234…").
func (p *progress) start(label string) *bar {
	if p == nil || p.w == nil {
		return nil
	}
	b := &bar{p: p, label: label, phase: "waiting", total: -1}
	if p.bars {
		p.mu.Lock()
		p.live = append(p.live, b)
		p.redrawLocked(true)
		p.mu.Unlock()
	}
	return b
}

// setPhase starts a phase of total bytes (-1: unknown).
func (b *bar) setPhase(phase string, total int64) {
	if b == nil {
		return
	}
	b.p.mu.Lock()
	b.phase, b.done, b.total = phase, 0, total
	b.p.redrawLocked(true)
	b.p.mu.Unlock()
}

// add counts n bytes of the current phase.
func (b *bar) add(n int) {
	if b == nil || !b.p.bars {
		return
	}
	b.p.mu.Lock()
	b.done += int64(n)
	b.p.redrawLocked(false)
	b.p.mu.Unlock()
}

// finish removes the bar and prints line in its place.
func (b *bar) finish(line string) {
	if b == nil {
		return
	}
	p := b.p
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clearLocked()
	for i, x := range p.live {
		if x == b {
			p.live = append(p.live[:i], p.live[i+1:]...)
			break
		}
	}
	_, _ = fmt.Fprintf(p.w, "%s %s\n", b.label, line)
	p.drawLocked()
}

// writer returns w counting the bytes written to it on b.
func (b *bar) writer(w io.Writer) io.Writer {
	if b == nil || !b.p.bars {
		return w
	}
	return countWriter{w, b}
}

// reader returns r counting the bytes read from it on b.
func (b *bar) reader(r io.Reader) io.Reader {
	if b == nil || !b.p.bars {
		return r
	}
	return countReader{r, b}
}

type countWriter struct {
	w io.Writer
	b *bar
}

func (c countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.b.add(n)
	return n, err
}

type countReader struct {
	r io.Reader
	b *bar
}

func (c countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.b.add(n)
	return n, err
}

// redrawLocked redraws the live bars, unless one was drawn less than redrawEvery ago and force
// is false.
func (p *progress) redrawLocked(force bool) {
	if !p.bars || (!force && time.Since(p.lastDraw) < redrawEvery) {
		return
	}
	p.clearLocked()
	p.drawLocked()
}

// clearLocked moves the cursor to the first live line and erases everything below.
func (p *progress) clearLocked() {
	if p.drawn > 0 {
		_, _ = fmt.Fprintf(p.w, "\x1b[%dA\x1b[J", p.drawn)
		p.drawn = 0
	}
}

func (p *progress) drawLocked() {
	if !p.bars {
		return
	}
	var sb strings.Builder
	for _, b := range p.live {
		sb.WriteString(b.line())
		sb.WriteByte('\n')
	}
	_, _ = io.WriteString(p.w, sb.String())
	p.drawn = len(p.live)
	p.lastDraw = time.Now()
}

// line renders a bar: label, phase, a 20-cell bar when the total is known, and the byte counts.
func (b *bar) line() string {
	if b.total <= 0 {
		return fmt.Sprintf("%s %-9s %s", b.label, b.phase, progressBytes(b.done))
	}
	const width = 20
	filled := int(min(b.done, b.total) * width / b.total)
	return fmt.Sprintf("%s %-9s [%s%s] %s / %s", b.label, b.phase, strings.Repeat("=", filled),
		strings.Repeat(" ", width-filled), progressBytes(b.done), progressBytes(b.total))
}

func progressBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
