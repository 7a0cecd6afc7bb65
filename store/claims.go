// SPDX-License-Identifier: Apache-2.0

package store

import (
	"sync"
	"sync/atomic"
	"time"
)

// Claims are how a layer fetches each chunk once. Every fetch (a read's,
// the prefetch, a guess, the background fetch) claims the chunks it will
// store before it sends a request: a chunk nobody has claimed becomes its
// own, a chunk another fetch claimed is left out (or, for the chunk a read
// waits for, waited for). A claim ends when the fetch's piece holding the
// chunk ends, after the chunk is kept (chunks.go): whoever waited looks it
// up then, and claims it only if that fetch failed.

// fetchBook is a layer's fetch bookkeeping: the claims of the fetches
// running, and the file reads among them, which the background fetch
// waits behind. The zero value is not usable: claimed must be a map.
type fetchBook struct {
	// reading counts the file reads fetching now; lastRead is when one
	// last ended, or the prefetch did (Unix ns).
	reading  atomic.Int32
	lastRead atomic.Int64

	// mu guards the fields below.
	mu      sync.Mutex
	claimed map[chunkKey]chan struct{} // closed when the claiming fetch (its piece) ends
}

// claim is a fetch's hold on refs: readers of them wait for done, other
// fetches leave them out. End it with release.
type claim struct {
	refs []chunkRef
	done chan struct{}
}

// claimLead claims chunk r for a read of it, unless another fetch has:
// then it takes nothing and returns that fetch's channel as busy.
func (b *fetchBook) claimLead(r chunkRef) (c claim, busy <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ch, ok := b.claimed[r.key()]; ok {
		return claim{}, ch
	}
	return b.takeLocked(claim{done: make(chan struct{})}, []chunkRef{r}), nil
}

// claim claims the chunks of refs that no fetch has, in refs' order.
func (b *fetchBook) claim(refs []chunkRef) claim {
	return b.extend(claim{done: make(chan struct{})}, refs)
}

// extend adds to c the chunks of refs that no fetch has, in refs' order.
func (b *fetchBook) extend(c claim, refs []chunkRef) claim {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.takeLocked(c, refs)
}

func (b *fetchBook) takeLocked(c claim, refs []chunkRef) claim {
	for _, x := range refs {
		if _, ok := b.claimed[x.key()]; !ok {
			b.claimed[x.key()] = c.done
			c.refs = append(c.refs, x)
		}
	}
	return c
}

// split replaces c, the claim of a fetch cut into several pieces, with
// one claim per piece, so that a reader waiting for a chunk wakes when the
// chunk's piece ends, not when the whole fetch does. Readers that waited
// for c itself wake and wait again for their piece.
func (b *fetchBook) split(c claim, pieces []piece) []claim {
	out := make([]claim, len(pieces))
	b.mu.Lock()
	for i, p := range pieces {
		out[i] = claim{refs: p.refs, done: make(chan struct{})}
		for _, r := range p.refs {
			if b.claimed[r.key()] == c.done {
				b.claimed[r.key()] = out[i].done
			}
		}
	}
	b.mu.Unlock()
	close(c.done)
	return out
}

// release ends a claim: its chunks are kept (or their fetch failed) and
// their readers look again.
func (b *fetchBook) release(c claim) {
	b.mu.Lock()
	for _, x := range c.refs {
		if b.claimed[x.key()] == c.done {
			delete(b.claimed, x.key())
		}
	}
	b.mu.Unlock()
	close(c.done)
}

// readStarted counts a file read's fetch; readEnded ends it.
func (b *fetchBook) readStarted() { b.reading.Add(1) }

func (b *fetchBook) readEnded() {
	b.readFetched()
	b.reading.Add(-1)
}

// readFetched records that a file read fetched from the registry now.
func (b *fetchBook) readFetched() { b.lastRead.Store(time.Now().UnixNano()) }

// quietIn returns how long until no file read will have fetched for d:
// d while a read fetches, 0 or less when that is already so.
func (b *fetchBook) quietIn(d time.Duration) time.Duration {
	if b.reading.Load() > 0 {
		return d
	}
	return d - time.Since(time.Unix(0, b.lastRead.Load()))
}
