// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"os"
	"sync"

	"github.com/golang/groupcache/lru"
	digest "github.com/opencontainers/go-digest"
)

// fdCache keeps the most recently read entries open, so that a chunk read
// from disk is one pread instead of open, pread and close. Closing a file
// another goroutine is reading is safe: *os.File defers the close(2) until
// the read returns, and the reader sees os.ErrClosed at worst.
type fdCache struct {
	// mu guards the field below.
	mu sync.Mutex
	c  *lru.Cache // digest.Digest → *os.File
}

func newFDCache(n int) *fdCache {
	f := &fdCache{c: lru.New(n)}
	f.c.OnEvicted = func(_ lru.Key, v any) { v.(*os.File).Close() }
	return f
}

func (f *fdCache) get(dg digest.Digest) (*os.File, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.c.Get(dg)
	if !ok {
		return nil, false
	}
	return v.(*os.File), true
}

// add keeps file open for dg; if another is already kept, file is closed.
func (f *fdCache) add(dg digest.Digest, file *os.File) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.c.Get(dg); ok {
		file.Close()
		return
	}
	f.c.Add(dg, file)
}

func (f *fdCache) remove(dg digest.Digest) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.c.Remove(dg)
}

func (f *fdCache) clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.c.Clear()
}
