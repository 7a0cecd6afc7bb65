// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"context"
	"sync"
)

// keyLocks is a per-entry mutex whose Lock honours a context, so a writer
// that waits behind another can give up. The zero value is ready to use.
type keyLocks struct {
	// mu guards held.
	mu   sync.Mutex
	held map[entryID]chan struct{} // closed when the holder unlocks
}

// lock takes the lock for id and returns its unlock function.
func (k *keyLocks) lock(ctx context.Context, id entryID) (func(), error) {
	for {
		k.mu.Lock()
		if k.held == nil {
			k.held = map[entryID]chan struct{}{}
		}
		ch, busy := k.held[id]
		if !busy {
			ch = make(chan struct{})
			k.held[id] = ch
			k.mu.Unlock()
			return func() { k.unlock(id, ch) }, nil
		}
		k.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (k *keyLocks) unlock(id entryID, ch chan struct{}) {
	k.mu.Lock()
	if k.held[id] != ch {
		k.mu.Unlock()
		panic("cachedir: unlock of a key that is not locked")
	}
	delete(k.held, id)
	k.mu.Unlock()
	close(ch)
}
