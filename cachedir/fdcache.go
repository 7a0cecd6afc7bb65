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
// kept with its entry's kind and the digest its content was checked
// against (verify.go), and is only handed to a reader of that entry who
// wants that content. Closing a file another goroutine is reading is
// safe: *os.File defers the close(2) until the read returns, and the
// reader sees os.ErrClosed at worst.
//
// The LRU is keyed by the entry's name alone (a string key hashes much
// faster than a struct; this is on every read), so a content entry and a
// record of the same name would take each other's place: a lost open,
// never a wrong file.
type fdCache struct {
	// mu guards the field below.
	mu sync.Mutex
	c  *lru.Cache // digest.Digest (the entry's name) → openEntry
}

type openEntry struct {
	f    *os.File
	kind kind
	want digest.Digest // what f's content was checked to hash to
}

func newFDCache(n int) *fdCache {
	f := &fdCache{c: lru.New(n)}
	f.c.OnEvicted = func(_ lru.Key, v any) { v.(openEntry).f.Close() }
	return f
}

// get returns the file kept open for the entry id if its content was
// checked against want ("" for an unchecked record).
func (f *fdCache) get(id entryID, want digest.Digest) (*os.File, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.c.Get(id.name)
	if !ok || v.(openEntry).kind != id.kind || v.(openEntry).want != want {
		return nil, false
	}
	return v.(openEntry).f, true
}

// add keeps file, the entry id's content checked against want, open and
// returns the file to read: file, or the one already kept for id and want
// (file is then closed). A file kept for another entry or want is
// replaced.
func (f *fdCache) add(id entryID, want digest.Digest, file *os.File) *os.File {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.c.Get(id.name); ok {
		if kept := v.(openEntry); kept.kind == id.kind && kept.want == want {
			file.Close()
			return kept.f
		}
		f.c.Remove(id.name)
	}
	f.c.Add(id.name, openEntry{file, id.kind, want})
	return file
}

// remove closes the file kept open for the entry id, if any.
func (f *fdCache) remove(id entryID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.c.Get(id.name); ok && v.(openEntry).kind == id.kind {
		f.c.Remove(id.name)
	}
}

func (f *fdCache) clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.c.Clear()
}
