// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"sync"

	"github.com/golang/groupcache/lru"
	digest "github.com/opencontainers/go-digest"
)

// memCache is a byte-bounded LRU of small entries. groupcache's lru counts
// entries, not bytes, and is not safe for concurrent use: this wraps it
// with a mutex and evicts by size. Cached slices are shared: callers must
// not modify them.
type memCache struct {
	max, maxEntry int64

	// mu guards the fields below.
	mu   sync.Mutex
	c    *lru.Cache
	size int64
}

func newMemCache(max, maxEntry int64) *memCache {
	if max == 0 {
		max = 64 << 20
	}
	if maxEntry == 0 {
		maxEntry = 4 << 20
	}
	m := &memCache{max: max, maxEntry: maxEntry, c: lru.New(0)}
	m.c.OnEvicted = func(_ lru.Key, v any) { m.size -= int64(len(v.([]byte))) }
	return m
}

func (m *memCache) get(dg digest.Digest) ([]byte, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.c.Get(dg)
	if !ok {
		return nil, false
	}
	return v.([]byte), true
}

func (m *memCache) add(dg digest.Digest, b []byte) {
	if m.max < 0 || int64(len(b)) > m.maxEntry || int64(len(b)) > m.max {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.c.Get(dg); ok {
		return
	}
	m.c.Add(dg, b)
	m.size += int64(len(b))
	for m.size > m.max {
		m.c.RemoveOldest()
	}
}

func (m *memCache) remove(dg digest.Digest) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.c.Remove(dg)
}

func (m *memCache) clear() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.c.Clear()
}
