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
	// ErrNotFound: no entry for the key (or none that is what the key
	// says).
	ErrNotFound = errors.New("not in cache")
	// ErrCorrupt: the bytes do not match the digest or size promised.
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
	mu  sync.Mutex
	lru *list.List // of *item (both kinds), most recently used at the front
	// items holds a map per kind (indexed by kind; a map keyed by the
	// digest string alone is the fast kind of Go map, and this is looked
	// up on every read).
	items    [kindRecord + 1]map[digest.Digest]*list.Element
	usage    int64
	reserved int64                 // bytes of writers and commits not installed yet
	pinned   map[digest.Digest]int // content entries
	limit    int64                 // what eviction keeps usage under: max, lower while the disk is full (full.go)
	fullAt   time.Time             // when a write last found the disk full; zero when it has room
}

// item is one entry on disk. Its fields other than id and size are
// guarded by Dir.mu.
type item struct {
	id   entryID
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
	for _, sub := range []string{dirs[kindContent], dirs[kindRecord], "tmp"} {
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
		items:  [...]map[digest.Digest]*list.Element{kindContent: {}, kindRecord: {}},
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

// recover removes temporary files and rebuilds the LRU from what is on
// disk, both kinds, oldest modification first.
func (d *Dir) recover() error {
	tmp := filepath.Join(d.root, "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("recover cache: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return fmt.Errorf("recover cache: %w", err)
	}
	if err := d.adoptLegacy(); err != nil {
		return err
	}
	var all []found
	for _, k := range []kind{kindContent, kindRecord} {
		found, err := d.scan(k)
		if err != nil {
			return err
		}
		all = append(all, found...)
	}
	sortByMtime(all)
	for _, f := range all {
		d.items[f.id.kind][f.id.name] = d.lru.PushFront(&item{id: f.id, size: f.size})
		d.usage += f.size
	}
	d.log.Info("cache opened", "path", d.root, "entries", len(all), "bytes", d.usage, "max", d.max)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.evictLocked(0)
	return nil
}

// legacyDir is where an earlier version filed every entry, content and
// records alike, under blobs/<algo>/<xx>/<hex>.
const legacyDir = "blobs"

// adoptLegacy takes over the entries of the earlier layout as content
// entries, with one rename, so that an upgrade keeps its chunks, blobs,
// manifests and configs. The records among them (filed under made-up
// names) become content entries that no reader asks for, since no
// content hashes to their names, and leave with eviction; were one ever
// read, its check would fail and remove it. When content/ holds entries
// already (a newer version ran before), the old tree is removed instead:
// a refetch is all it costs.
func (d *Dir) adoptLegacy() error {
	old := filepath.Join(d.root, legacyDir)
	if _, err := os.Stat(old); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	content := filepath.Join(d.root, dirs[kindContent])
	if err := os.Remove(content); err == nil || errors.Is(err, fs.ErrNotExist) {
		if err := os.Rename(old, content); err != nil {
			return fmt.Errorf("recover cache: adopt %s: %w", old, err)
		}
		d.log.Info("cache entries of the earlier layout adopted as content entries", "path", old)
		return nil
	}
	d.log.Warn("removing the cache entries of the earlier layout", "path", old)
	if err := os.RemoveAll(old); err != nil {
		return fmt.Errorf("recover cache: remove %s: %w", old, err)
	}
	return nil
}

type found struct {
	id    entryID
	size  int64
	mtime int64
}

// scan lists the valid entries of kind k; stray files are removed.
func (d *Dir) scan(k kind) ([]found, error) {
	var out []found
	top := filepath.Join(d.root, dirs[k])
	err := filepath.WalkDir(top, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(top, p)
		parts := strings.Split(rel, string(filepath.Separator))
		info, ierr := de.Info()
		id := entryID{kind: k}
		if len(parts) == 3 {
			id.name = digest.NewDigestFromEncoded(digest.Algorithm(parts[0]), parts[2])
		}
		if ierr != nil || len(parts) != 3 || id.name.Validate() != nil || parts[1] != parts[2][:2] || !de.Type().IsRegular() {
			d.log.Warn("removing stray cache file", "path", p)
			return os.Remove(p)
		}
		out = append(out, found{id, info.Size(), info.ModTime().UnixNano()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan cache: %w", err)
	}
	return out, nil
}

// Usage returns the bytes on disk and the limit they are kept under:
// Options.MaxSize, or less while the disk is full (see full.go).
func (d *Dir) Usage() (used, limit int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.usage, d.limit
}

// Has reports whether the entry k names is on disk, and is what k says
// of its size.
func (d *Dir) Has(k Key) bool {
	_, ok := d.size(k, false)
	return ok
}

// Contains reports whether the entry k names is in memory or on disk
// (Has). Only content entries are kept in memory.
func (d *Dir) Contains(k Key) bool {
	if _, ok := d.memGet(k); ok {
		return true
	}
	return d.Has(k)
}

// Remember keeps b, the verified content of dg, in the memory LRU only:
// the caller writes it to disk later (Put) or not at all. The memory LRU
// holds content entries only: a byte there is what its digest says.
func (d *Dir) Remember(dg digest.Digest, b []byte) { d.mem.add(dg, b) }

// memGet returns k's bytes from the memory LRU, if k is a content key
// and they are there with the length k says.
func (d *Dir) memGet(k Key) ([]byte, bool) {
	if k.kind != kindContent {
		return nil, false
	}
	b, ok := d.mem.get(k.name)
	if !ok || (k.size >= 0 && int64(len(b)) != k.size) {
		return nil, false
	}
	return b, true
}

// Demote marks the content entry dg as least recently used, so that it
// is the first entry to go when room is needed, and drops it from
// memory: its content is now also held elsewhere (the store demotes the
// chunks of a file it has assembled whole). A later read makes it recent
// again.
func (d *Dir) Demote(dg digest.Digest) {
	d.mem.remove(dg)
	d.mu.Lock()
	defer d.mu.Unlock()
	if el, ok := d.items[kindContent][dg]; ok {
		d.lru.MoveToBack(el)
	}
}

// Pin protects the content entry dg (present or about to be written)
// from eviction until a matching Unpin. Pins nest. (The store pins the
// chunks a prefetch fills; records are not pinned.)
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

// Remove deletes the entry k names, if any, whatever its size.
func (d *Dir) Remove(k Key) error {
	p, err := d.path(k.id())
	if err != nil {
		return err
	}
	d.forget(k.id())
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", k, err)
	}
	return nil
}

func (d *Dir) forget(id entryID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if el, ok := d.itemLocked(id); ok {
		d.dropLocked(el)
	} else {
		d.dropMemLocked(id)
	}
}

// itemLocked returns the element of the entry id. d.mu must be held.
func (d *Dir) itemLocked(id entryID) (*list.Element, bool) {
	if int(id.kind) >= len(d.items) {
		return nil, false
	}
	el, ok := d.items[id.kind][id.name]
	return el, ok
}

// dropLocked takes the entry el out of the accounting, the memory LRU and
// the open files; the caller unlinks its file. d.mu must be held.
func (d *Dir) dropLocked(el *list.Element) {
	it := el.Value.(*item)
	d.lru.Remove(el)
	delete(d.items[it.id.kind], it.id.name)
	d.usage -= it.size
	d.dropMemLocked(it.id)
}

// dropMemLocked drops id from the memory LRU and the open files.
func (d *Dir) dropMemLocked(id entryID) {
	if id.kind == kindContent {
		d.mem.remove(id.name)
	}
	d.fds.remove(id)
}

// evictLocked removes least recently used, unpinned entries of either
// kind until need more bytes (and the reserved ones) fit under the limit.
// It reports whether they do.
func (d *Dir) evictLocked(need int64) bool {
	need += d.reserved
	for el := d.lru.Back(); el != nil && d.usage+need > d.limit; {
		it := el.Value.(*item)
		prev := el.Prev()
		if it.id.kind != kindContent || d.pinned[it.id.name] == 0 {
			d.dropLocked(el)
			if p, err := d.path(it.id); err == nil {
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
