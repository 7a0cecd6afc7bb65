// SPDX-License-Identifier: Apache-2.0

package index

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestBuilderCaps checks every hard cap: the value at the cap is
// accepted, one past it is refused with ErrInvalid and an error that says
// which limit.
func TestBuilderCaps(t *testing.T) {
	reg := func(size int64) Entry { return Entry{Name: "f", Type: TypeReg, Size: size} }
	ck := func(c Chunk) Chunk {
		if c.Digest == "" && !c.Zero {
			c.Digest = fuzzDigest
		}
		return c
	}
	big := int64(MaxChunkSize)
	tests := []struct {
		name  string
		lim   Limits
		entry Entry
		chunk Chunk // added when its Size is set
		want  string
	}{
		{name: "chunk at MaxChunkSize", lim: Limits{BlobEnd: 1 << 40}, entry: reg(big), chunk: ck(Chunk{Size: big, CompressedEnd: big})},
		{name: "chunk over MaxChunkSize", lim: Limits{BlobEnd: 1 << 40}, entry: reg(big + 1), chunk: ck(Chunk{Size: big + 1, CompressedEnd: big}), want: "limit 67108864"},
		{name: "zero chunk over MaxChunkSize", entry: reg(big + 1), chunk: Chunk{Size: big + 1, Zero: true}, want: "limit 67108864"},
		{name: "huge declared chunk", entry: reg(1 << 62), chunk: ck(Chunk{Size: 1 << 62, CompressedEnd: 10}), want: "size 4611686018427387904"},
		{name: "compressed at MaxCompressedChunk", lim: Limits{BlobEnd: 1 << 40}, entry: reg(1), chunk: ck(Chunk{Size: 1, CompressedOffset: 5, CompressedEnd: 5 + MaxCompressedChunk})},
		{name: "compressed over MaxCompressedChunk", lim: Limits{BlobEnd: 1 << 40}, entry: reg(1), chunk: ck(Chunk{Size: 1, CompressedOffset: 5, CompressedEnd: 6 + MaxCompressedChunk}), want: "limit 83886080"},
		{name: "compressed end at BlobEnd", lim: Limits{BlobEnd: 100}, entry: reg(1), chunk: ck(Chunk{Size: 1, CompressedOffset: 90, CompressedEnd: 100})},
		{name: "compressed end past BlobEnd", lim: Limits{BlobEnd: 100}, entry: reg(1), chunk: ck(Chunk{Size: 1, CompressedOffset: 90, CompressedEnd: 101}), want: "past 100"},
		{name: "compressed offset negative", entry: reg(1), chunk: ck(Chunk{Size: 1, CompressedOffset: -5, CompressedEnd: 1}), want: "compressed range [-5, 1)"},
		{name: "compressed end before offset", entry: reg(1), chunk: ck(Chunk{Size: 1, CompressedOffset: 5, CompressedEnd: 4}), want: "compressed range [5, 4)"},
		{name: "inner offset at the cap", lim: Limits{MaxInflateRatio: 1100}, entry: reg(1), chunk: ck(Chunk{Size: 1, CompressedEnd: 1 << 20, InnerOffset: MaxInnerOffset})},
		{name: "inner offset over the cap", entry: reg(1), chunk: ck(Chunk{Size: 1, CompressedEnd: 1 << 20, InnerOffset: MaxInnerOffset + 1}), want: "inner offset 67108865"},
		{name: "ratio at the limit", lim: Limits{MaxInflateRatio: 1100}, entry: reg(1100), chunk: ck(Chunk{Size: 1100, CompressedEnd: 1})},
		{name: "ratio over the limit", lim: Limits{MaxInflateRatio: 1100}, entry: reg(1000), chunk: ck(Chunk{Size: 1000, CompressedEnd: 1, InnerOffset: 101}), want: "cannot come from 1 compressed bytes"},
		{name: "uid at MaxID", entry: Entry{Name: "x", Type: TypeFifo, UID: MaxID, GID: MaxID}},
		{name: "uid 2^32-1", entry: Entry{Name: "x", Type: TypeFifo, UID: 1<<32 - 1}, want: "owner 4294967295:0"},
		{name: "uid 2^32", entry: Entry{Name: "x", Type: TypeFifo, UID: 1 << 32}, want: "owner 4294967296:0"},
		{name: "gid 2^32", entry: Entry{Name: "x", Type: TypeFifo, GID: 1 << 32}, want: "owner 0:4294967296"},
		{name: "negative uid", entry: Entry{Name: "x", Type: TypeFifo, UID: -1}, want: "owner -1:0"},
		{name: "name at MaxNameLen", entry: Entry{Name: strings.Repeat("n", MaxNameLen), Type: TypeFifo}},
		{name: "name over MaxNameLen", entry: Entry{Name: strings.Repeat("n", MaxNameLen+1), Type: TypeFifo}, want: "name of 4097 bytes"},
		{name: "symlink target at MaxLinkNameLen", entry: Entry{Name: "l", Type: TypeSymlink, LinkName: strings.Repeat("t", MaxLinkNameLen)}},
		{name: "symlink target over MaxLinkNameLen", entry: Entry{Name: "l", Type: TypeSymlink, LinkName: strings.Repeat("t", MaxLinkNameLen+1)}, want: "link target of 4097 bytes"},
		{name: "xattr name at the cap", entry: xattrEntry(map[string]int{strings.Repeat("k", MaxXattrNameLen): 1})},
		{name: "xattr name over the cap", entry: xattrEntry(map[string]int{strings.Repeat("k", MaxXattrNameLen+1): 1}), want: "xattr name of 256 bytes"},
		{name: "empty xattr name", entry: xattrEntry(map[string]int{"": 1}), want: "xattr name of 0 bytes"},
		{name: "xattr value at the cap", entry: xattrEntry(map[string]int{"user.a": MaxXattrValueLen})},
		{name: "xattr value over the cap", entry: xattrEntry(map[string]int{"user.a": MaxXattrValueLen + 1}), want: "of 65537 bytes"},
		{name: "xattr list over the cap", entry: xattrEntry(manyXattrs(MaxXattrListLen/8 + 1)), want: "xattr names of more than 65536 bytes"},
		{name: "xattr list at the cap", entry: xattrEntry(manyXattrs(MaxXattrListLen / 8))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBuilder(tt.lim)
			err := b.Add(tt.entry)
			if err == nil && tt.chunk.Size != 0 {
				err = b.AddChunk(tt.entry.Name, tt.chunk)
			}
			if err == nil && tt.chunk.Size == tt.entry.Size {
				_, err = b.Build(t.Context())
			}
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused at the cap: %v", err)
			case tt.want != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error = %v, want ErrInvalid saying %q", err, tt.want)
			}
		})
	}
}

func xattrEntry(sizes map[string]int) Entry {
	x := map[string][]byte{}
	for k, n := range sizes {
		x[k] = make([]byte, n)
	}
	return Entry{Name: "x", Type: TypeFifo, Xattrs: x}
}

// manyXattrs returns n xattr names of 7 bytes (8 with the NUL).
func manyXattrs(n int) map[string]int {
	m := map[string]int{}
	for i := range n {
		m[fmt.Sprintf("u.%05d", i)] = 0
	}
	return m
}

// TestBuilderLongNamesUnquoted checks that a refused huge name is not
// copied into the error.
func TestBuilderLongNamesUnquoted(t *testing.T) {
	long := strings.Repeat("n", 1<<20)
	b := NewBuilder(Limits{})
	for _, err := range []error{
		b.Add(Entry{Name: long, Type: TypeFifo}),
		b.Add(Entry{Name: "l", Type: TypeSymlink, LinkName: long}),
		b.AddHardlink(long, "x"),
		b.AddHardlink("x", long),
		b.AddChunk(long, Chunk{Size: 1}),
	} {
		if !errors.Is(err, ErrInvalid) || len(err.Error()) > 200 {
			t.Errorf("error = %.200v (%d bytes), want a short ErrInvalid", err, len(err.Error()))
		}
	}
}

// TestBuilderMaxEntriesCap checks that Limits.MaxEntries cannot raise the
// hard cap.
func TestBuilderMaxEntriesCap(t *testing.T) {
	for _, n := range []int{0, -1, MaxEntries + 1, 1 << 40} {
		if b := NewBuilder(Limits{MaxEntries: n}); b.lim.MaxEntries != MaxEntries {
			t.Errorf("NewBuilder(MaxEntries %d) allows %d entries, want %d", n, b.lim.MaxEntries, MaxEntries)
		}
	}
}

// linkChain adds file f0 and n hard links, each to the one before:
// l1 -> f0, l2 -> l1, ... In TOC order the links come first, last to
// first, so that a resolver walking each link to the end does n^2/2 hops.
func linkChain(t testing.TB, b *Builder, n int) {
	t.Helper()
	for i := n; i >= 1; i-- {
		prev := fmt.Sprintf("l%d", i-1)
		if i == 1 {
			prev = "f0"
		}
		if err := b.AddHardlink(fmt.Sprintf("l%d", i), prev); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Add(Entry{Name: "f0", Type: TypeFifo}); err != nil {
		t.Fatal(err)
	}
}

// TestBuilderLinkChainLinear checks that hard links resolve in linear
// time: a 40,000-link chain (70 s of CPU when each link was walked to
// its end) and a 40,000-link star build well under a second.
func TestBuilderLinkChainLinear(t *testing.T) {
	const n = 40000
	build := func(name string, add func(b *Builder)) *Index {
		b := NewBuilder(Limits{})
		add(b)
		start := time.Now()
		ix, err := b.Build(t.Context())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: Build took %v, want well under a second", name, d)
		}
		return ix
	}
	ix := build("chain", func(b *Builder) { linkChain(t, b, n) })
	f, _ := ix.Lookup("f0")
	if l, _ := ix.Lookup(fmt.Sprintf("l%d", n)); l != f || f.NumLink != n+1 {
		t.Errorf("chain: l%d resolves to %v, NumLink %d; want f0 with %d", n, l, f.NumLink, n+1)
	}
	ix = build("star", func(b *Builder) {
		if err := b.Add(Entry{Name: "f0", Type: TypeFifo}); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := b.AddHardlink(fmt.Sprintf("s%d", i), "f0"); err != nil {
				t.Fatal(err)
			}
		}
	})
	if f, _ := ix.Lookup("f0"); f.NumLink != n+1 {
		t.Errorf("star: NumLink %d, want %d", f.NumLink, n+1)
	}
}

// TestBuilderLinkChainRefused checks that a long chain ending in a loop
// or a missing name is still refused, quickly.
func TestBuilderLinkChainRefused(t *testing.T) {
	for _, tail := range []string{"l40000", "nope"} {
		b := NewBuilder(Limits{})
		if err := b.AddHardlink("l0", tail); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 40000; i++ {
			if err := b.AddHardlink(fmt.Sprintf("l%d", i), fmt.Sprintf("l%d", i-1)); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		if _, err := b.Build(t.Context()); !errors.Is(err, ErrInvalid) {
			t.Errorf("chain to %s: Build error = %v, want ErrInvalid", tail, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("chain to %s: Build took %v", tail, d)
		}
	}
}

// TestBuilderBuildCancelled checks that Build gives up with the context's
// error.
func TestBuilderBuildCancelled(t *testing.T) {
	b := NewBuilder(Limits{})
	linkChain(t, b, 10000)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := b.Build(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Build(cancelled) error = %v, want context.Canceled", err)
	}
}

func BenchmarkBuildLinkChain(b *testing.B) {
	for b.Loop() {
		bl := NewBuilder(Limits{})
		linkChain(b, bl, 40000)
		if _, err := bl.Build(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}
