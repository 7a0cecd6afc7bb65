// SPDX-License-Identifier: Apache-2.0

package store

import (
	"testing"

	"github.com/stargz-store/stargz-store/store/index"
)

// closed reports whether ch is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestFetchBookClaims: a chunk is claimed by one fetch at a time; a read
// of a claimed chunk gets that claim's channel; a split claim wakes the
// readers of each piece when that piece ends; a release frees only the
// claimer's own chunks.
func TestFetchBookClaims(t *testing.T) {
	e := &index.Entry{ID: 1}
	for i := range 4 {
		e.Chunks = append(e.Chunks, index.Chunk{Offset: int64(i * 10), Size: 10})
	}
	refs := chunkRefsOf(e)
	b := fetchBook{claimed: map[chunkKey]chan struct{}{}}

	bg := b.claim(refs[2:])
	if len(bg.refs) != 2 {
		t.Fatalf("claim(2 free chunks) took %d", len(bg.refs))
	}
	rd, busy := b.claimLead(refs[0])
	if busy != nil || len(rd.refs) != 1 {
		t.Fatalf("claimLead(free chunk) = %d chunks, busy %v", len(rd.refs), busy != nil)
	}
	rd = b.extend(rd, refs[1:])
	if len(rd.refs) != 2 || rd.refs[1] != refs[1] {
		t.Fatalf("extend() took %v, want chunks 0 and 1 (2 and 3 are claimed)", rd.refs)
	}
	if _, busy := b.claimLead(refs[3]); busy != bg.done {
		t.Fatal("claimLead(claimed chunk) did not return its claim's channel")
	}

	pieces := []piece{{refs: refs[2:3]}, {refs: refs[3:4]}}
	split := b.split(bg, pieces)
	if len(split) != 2 || !closed(bg.done) {
		t.Fatalf("split() = %d claims, original closed %v; want 2 and closed", len(split), closed(bg.done))
	}
	_, busy2 := b.claimLead(refs[2])
	_, busy3 := b.claimLead(refs[3])
	if busy2 != split[0].done || busy3 != split[1].done {
		t.Fatal("after split, a chunk is not under its piece's claim")
	}
	b.release(split[0])
	if !closed(busy2) || closed(busy3) {
		t.Fatal("releasing the first piece did not wake its readers alone")
	}
	if again, busy := b.claimLead(refs[2]); busy != nil {
		t.Fatal("a released chunk is still claimed")
	} else {
		b.release(again)
	}
	b.release(split[1])
	b.release(rd)
	if len(b.claimed) != 0 {
		t.Errorf("%d chunks still claimed after every release", len(b.claimed))
	}
}
