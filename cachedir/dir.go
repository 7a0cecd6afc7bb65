// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"container/list"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Error classes of the cache.
var (
	// ErrNotFound: no entry for the digest.
	ErrNotFound = errors.New("not in cache")
	// ErrCorrupt: written bytes do not match the digest or size promised.
	ErrCorrupt = errors.New("cache entry corrupt")
	// ErrTooLarge: the entry does not fit in the cache (beside its
	// pinned entries).
	ErrTooLarge = errors.New("entry larger than the cache")
)

// Options configures a Dir.
type Options struct {
	// MaxSize is the most bytes the cache keeps on disk; 0 means 10 GiB or
	// 10 % of the filesystem, whichever is less.
	MaxSize int64
	// MemorySize bounds the in-memory LRU in bytes; 0 means 64 MiB,
	// negative disables it.
	MemorySize int64
	// MemoryMaxEntry is the largest entry kept in memory; 0 means 4 MiB.
	MemoryMaxEntry int64
	// Logger receives eviction, recovery, corrupt-entry and disk-full
	// lines; nil discards.
	Logger *slog.Logger
}

// Dir is an on-disk cache rooted at one directory. It is safe for
// concurrent use.
type Dir struct {
	root    string
	max     int64
	log     *slog.Logger
	mem     *memCache
	fds     *fdCache
	keys    keyLocks
	closeMu sync.Once
	// hook, set by tests, can fail the disk operations of a write
	// (see fault).
	hook func(op string) error
	// checks counts the entries verify hashed (tests assert on it).
	checks atomic.Int64

	// mu guards the fields below.
	mu       sync.Mutex
	lru      *list.List // of *item, most recently used at the front
	items    map[digest.Digest]*list.Element
	usage    int64
	reserved int64 // bytes of writers and commits not installed yet
	pinned   map[digest.Digest]int
	limit    int64     // what eviction keeps usage under: max, lower while the disk is full (full.go)
	fullAt   time.Time // when a write last found the disk full; zero when it has room
}

// item is one entry on disk. Its fields other than d and size are
// guarded by Dir.mu.
type item struct {
	d    digest.Digest
	size int64
	// verified is what the content was checked, in this process, to
	// hash to ("" not yet); checking, when not nil, is closed when the
	// check running ends (verify.go).
	verified digest.Digest
	checking chan struct{}
}

// Open opens (creating) the cache under root, removes leftovers of
// interrupted writes and counts what is there.
func Open(root string, opts Options) (*Dir, error) {
	for _, sub := range []string{"blobs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o700); err != nil {
			return nil, fmt.Errorf("open cache: %w", err)
		}
	}
	max, err := maxSize(root, opts.MaxSize)
	if err != nil {
		return nil, err
	}
	d := &Dir{
		root:   root,
		max:    max,
		limit:  max,
		log:    opts.Logger,
		mem:    newMemCache(opts.MemorySize, opts.MemoryMaxEntry),
		fds:    newFDCache(openFiles),
		lru:    list.New(),
		items:  map[digest.Digest]*list.Element{},
		pinned: map[digest.Digest]int{},
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if err := d.recover(); err != nil {
		return nil, err
	}
	return d, nil
}

// openFiles is how many cache files ReadAll keeps open.
const openFiles = 128

// maxSize applies the default: 10 GiB or 10 % of the filesystem.
func maxSize(root string, set int64) (int64, error) {
	if set > 0 {
		return set, nil
	}
	tenth, err := fsTenth(root)
	if err != nil {
		return 0, fmt.Errorf("open cache: %w", err)
	}
	return min(int64(10<<30), tenth), nil
}

// path is where the entry for d lives: blobs/<algo>/<first two hex>/<hex>.
// Digests are validated first, so no key can name a path outside blobs.
func (d *Dir) path(dg digest.Digest) (string, error) {
	if err := dg.Validate(); err != nil {
		return "", fmt.Errorf("cache key %q: %w", dg, err)
	}
	hex := dg.Encoded()
	return filepath.Join(d.root, "blobs", string(dg.Algorithm()), hex[:2], hex), nil
}

// recover removes temporary files and rebuilds the LRU from what is on
// disk, oldest modification first.
func (d *Dir) recover() error {
	tmp := filepath.Join(d.root, "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("recover cache: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return fmt.Errorf("recover cache: %w", err)
	}
	found, err := d.scan()
	if err != nil {
		return err
	}
	for _, f := range found {
		d.items[f.d] = d.lru.PushFront(&item{d: f.d, size: f.size})
		d.usage += f.size
	}
	d.log.Info("cache opened", "path", d.root, "entries", len(found), "bytes", d.usage, "max", d.max)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.evictLocked(0)
	return nil
}

type found struct {
	d     digest.Digest
	size  int64
	mtime int64
}

// scan lists valid entries sorted by modification time; stray files are
// removed.
func (d *Dir) scan() ([]found, error) {
	var out []found
	blobs := filepath.Join(d.root, "blobs")
	err := filepath.WalkDir(blobs, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(blobs, p)
		parts := strings.Split(rel, string(filepath.Separator))
		info, ierr := de.Info()
		dg := digest.Digest("")
		if len(parts) == 3 {
			dg = digest.NewDigestFromEncoded(digest.Algorithm(parts[0]), parts[2])
		}
		if ierr != nil || len(parts) != 3 || dg.Validate() != nil || parts[1] != parts[2][:2] {
			d.log.Warn("removing stray cache file", "path", p)
			return os.Remove(p)
		}
		out = append(out, found{dg, info.Size(), info.ModTime().UnixNano()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan cache: %w", err)
	}
	sortByMtime(out)
	return out, nil
}

// Usage returns the bytes on disk and the limit they are kept under:
// Options.MaxSize, or less while the disk is full (see full.go).
func (d *Dir) Usage() (used, limit int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.usage, d.limit
}

// Has reports whether dg is cached on disk.
func (d *Dir) Has(dg digest.Digest) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.items[dg]
	return ok
}

// Contains reports whether dg is cached in memory or on disk.
func (d *Dir) Contains(dg digest.Digest) bool {
	if _, ok := d.mem.get(dg); ok {
		return true
	}
	return d.Has(dg)
}

// Remember keeps b, the verified content of dg, in the memory LRU only:
// the caller writes it to disk later (Put) or not at all.
func (d *Dir) Remember(dg digest.Digest, b []byte) { d.mem.add(dg, b) }

// touch marks dg as just used.
func (d *Dir) touch(dg digest.Digest) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	el, ok := d.items[dg]
	if ok {
		d.lru.MoveToFront(el)
	}
	return ok
}

// Demote marks dg as least recently used, so that it is the first entry
// to go when room is needed, and drops it from memory: its content is now
// also held elsewhere (the store demotes the chunks of a file it has
// assembled whole). A later read makes it recent again.
func (d *Dir) Demote(dg digest.Digest) {
	d.mem.remove(dg)
	d.mu.Lock()
	defer d.mu.Unlock()
	if el, ok := d.items[dg]; ok {
		d.lru.MoveToBack(el)
	}
}

// Pin protects dg (present or about to be written) from eviction until a
// matching Unpin. Pins nest.
func (d *Dir) Pin(dg digest.Digest) {
	d.mu.Lock()
	d.pinned[dg]++
	d.mu.Unlock()
}

// Unpin undoes one Pin.
func (d *Dir) Unpin(dg digest.Digest) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pinned[dg] <= 1 {
		delete(d.pinned, dg)
		return
	}
	d.pinned[dg]--
}

// Remove deletes the entry for dg, if any.
func (d *Dir) Remove(dg digest.Digest) error {
	p, err := d.path(dg)
	if err != nil {
		return err
	}
	d.forget(dg)
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", dg, err)
	}
	return nil
}

func (d *Dir) forget(dg digest.Digest) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if el, ok := d.items[dg]; ok {
		d.dropLocked(el)
	} else {
		d.mem.remove(dg)
		d.fds.remove(dg)
	}
}

// dropLocked takes the entry el out of the accounting, the memory LRU and
// the open files; the caller unlinks its file. d.mu must be held.
func (d *Dir) dropLocked(el *list.Element) {
	it := el.Value.(*item)
	d.lru.Remove(el)
	delete(d.items, it.d)
	d.usage -= it.size
	d.mem.remove(it.d)
	d.fds.remove(it.d)
}

// evictLocked removes least recently used, unpinned entries until need
// more bytes (and the reserved ones) fit under the limit. It reports
// whether they do.
func (d *Dir) evictLocked(need int64) bool {
	need += d.reserved
	for el := d.lru.Back(); el != nil && d.usage+need > d.limit; {
		it := el.Value.(*item)
		prev := el.Prev()
		if d.pinned[it.d] == 0 {
			d.dropLocked(el)
			if p, err := d.path(it.d); err == nil {
				if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					d.log.Warn("evict cache entry", "path", p, "err", err)
				}
			}
		}
		el = prev
	}
	return d.usage+need <= d.limit
}

// Close releases the cache. It is idempotent; entries stay on disk.
func (d *Dir) Close() error {
	d.closeMu.Do(func() {
		d.mem.clear()
		d.fds.clear()
	})
	return nil
}
