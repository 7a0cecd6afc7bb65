// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"context"
	"sync"

	digest "github.com/opencontainers/go-digest"
)

// keyLocks is a per-digest mutex whose Lock honours a context, so a writer
// that waits behind another can give up. The zero value is ready to use.
type keyLocks struct {
	// mu guards held.
	mu   sync.Mutex
	held map[digest.Digest]chan struct{} // closed when the holder unlocks
}

// lock takes the lock for dg and returns its unlock function.
func (k *keyLocks) lock(ctx context.Context, dg digest.Digest) (func(), error) {
	for {
		k.mu.Lock()
		if k.held == nil {
			k.held = map[digest.Digest]chan struct{}{}
		}
		ch, busy := k.held[dg]
		if !busy {
			ch = make(chan struct{})
			k.held[dg] = ch
			k.mu.Unlock()
			return func() { k.unlock(dg, ch) }, nil
		}
		k.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (k *keyLocks) unlock(dg digest.Digest, ch chan struct{}) {
	k.mu.Lock()
	if k.held[dg] != ch {
		k.mu.Unlock()
		panic("cachedir: unlock of a key that is not locked")
	}
	delete(k.held, dg)
	k.mu.Unlock()
	close(ch)
}
