// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"os"
	"sync"

	"github.com/golang/groupcache/lru"
	digest "github.com/opencontainers/go-digest"
)

// fdCache keeps the most recently read entries open, so that a chunk read
// from disk is one pread instead of open, pread and close. Each file is
// kept with the digest its content was checked against (verify.go), and
// is only handed to a reader who wants that content. Closing a file
// another goroutine is reading is safe: *os.File defers the close(2)
// until the read returns, and the reader sees os.ErrClosed at worst.
type fdCache struct {
	// mu guards the field below.
	mu sync.Mutex
	c  *lru.Cache // entryID → openEntry
}

type openEntry struct {
	f    *os.File
	want digest.Digest // what f's content was checked to hash to
}

func newFDCache(n int) *fdCache {
	f := &fdCache{c: lru.New(n)}
	f.c.OnEvicted = func(_ lru.Key, v any) { v.(openEntry).f.Close() }
	return f
}

// get returns the file kept open for key if its content was checked
// against want ("" for an unchecked record).
func (f *fdCache) get(key entryID, want digest.Digest) (*os.File, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.c.Get(key)
	if !ok || v.(openEntry).want != want {
		return nil, false
	}
	return v.(openEntry).f, true
}

// add keeps file, whose content hashes to want, open for key and returns
// the file to read: file, or the one already kept for key and want (file
// is then closed). A file kept for another want is replaced.
func (f *fdCache) add(key entryID, want digest.Digest, file *os.File) *os.File {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.c.Get(key); ok {
		if kept := v.(openEntry); kept.want == want {
			file.Close()
			return kept.f
		}
		f.c.Remove(key)
	}
	f.c.Add(key, openEntry{file, want})
	return file
}

func (f *fdCache) remove(key entryID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.c.Remove(key)
}

func (f *fdCache) clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.c.Clear()
}
