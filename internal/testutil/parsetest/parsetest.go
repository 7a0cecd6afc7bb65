// SPDX-License-Identifier: Apache-2.0

// Package parsetest holds what the tests of the TOC parsers
// (store/estargz, store/zstdchunked) share: a TOC that is slow to parse,
// a check that a parse stops at every look at its context, and the
// benchmark of the worst parse a TOC size limit allows. It imports
// nothing of the store, so that the parsers' own (internal) tests can
// use it.
package parsetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// ManyEntries is TOC JSON of n entries, as both formats spell them:
// fifos in a few directories and a chain of hard links, each to the next
// one in TOC order, so that decoding, indexing and link resolution all
// take a while (a resolver that walks every link to its end takes
// quadratic time).
func ManyEntries(n int) []byte {
	var sb strings.Builder
	sb.WriteString(`{"version":1,"entries":[`)
	for i := range n {
		if i > 0 {
			sb.WriteByte(',')
		}
		switch {
		case i%2 == 0:
			fmt.Fprintf(&sb, `{"name":"d%d/f%d","type":"fifo","mode":420,"uid":%d}`, i%64, i, i%1000)
		case i+2 < n:
			fmt.Fprintf(&sb, `{"name":"d%d/l%d","type":"hardlink","linkName":"d%d/l%d"}`, i%64, i, (i+2)%64, i+2)
		default:
			fmt.Fprintf(&sb, `{"name":"d%d/l%d","type":"hardlink","linkName":"d0/f0"}`, i%64, i)
		}
	}
	sb.WriteString(`]}`)
	return []byte(sb.String())
}

// ManyEntriesUpTo is ManyEntries with as many entries as fit in max
// bytes.
func ManyEntriesUpTo(max int) []byte {
	n := max / (len(ManyEntries(1<<16)) >> 16)
	json := ManyEntries(n)
	for len(json) > max {
		n = n * 63 / 64
		json = ManyEntries(n)
	}
	return json
}

// countdown is a context whose Err reports context.Canceled from its
// n+1-th call on: a deterministic stand-in for a cancellation that
// arrives while a long loop runs.
type countdown struct {
	context.Context
	left  atomic.Int64
	calls atomic.Int64
}

func newCountdown(n int64) *countdown {
	c := &countdown{Context: context.Background()}
	c.left.Store(n)
	return c
}

func (c *countdown) Err() error {
	c.calls.Add(1)
	if c.left.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// CheckCancels runs op once to count its looks at its context, which
// must be at least minChecks, then cancels it at each look in turn: op
// must then fail with the context's error.
func CheckCancels(t *testing.T, what string, minChecks int64, op func(context.Context) error) {
	t.Helper()
	all := newCountdown(1 << 62)
	if err := op(all); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	checks := all.calls.Load()
	if checks < minChecks {
		t.Fatalf("%s: %d context checks, want at least %d", what, checks, minChecks)
	}
	for n := range checks {
		if err := op(newCountdown(n)); !errors.Is(err, context.Canceled) {
			t.Fatalf("%s cancelled at check %d of %d: error = %v, want context.Canceled", what, n, checks, err)
		}
	}
}

// BenchmarkParse measures open, a parse of a TOC of tocBytes: its wall
// and CPU time, and how soon a cancellation a quarter into the parse
// stops it ("cancel-ms").
func BenchmarkParse(b *testing.B, tocBytes int, open func(context.Context) error) {
	var full, cpu, late time.Duration
	for b.Loop() {
		start, startCPU := time.Now(), cpuTime()
		if err := open(b.Context()); err != nil {
			b.Fatal(err)
		}
		full, cpu = time.Since(start), cpuTime()-startCPU
		ctx, cancel := context.WithCancel(b.Context())
		var cancelled atomic.Int64
		timer := time.AfterFunc(full/4, func() { cancelled.Store(time.Now().UnixNano()); cancel() })
		if err := open(ctx); !errors.Is(err, context.Canceled) {
			b.Fatalf("cancelled parse: %v", err)
		}
		late = time.Duration(time.Now().UnixNano() - cancelled.Load())
		timer.Stop()
		cancel()
	}
	b.ReportMetric(float64(tocBytes)/(1<<20), "TOC-MiB")
	b.ReportMetric(float64(full.Milliseconds()), "parse-ms")
	b.ReportMetric(float64(cpu.Milliseconds()), "parse-cpu-ms")
	b.ReportMetric(float64(late.Microseconds())/1000, "cancel-ms")
}

// cpuTime is the process's user and system CPU time so far: on a shared
// machine, a steadier measure of the parse than the wall clock.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
