// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"os"
	"path/filepath"

	digest "github.com/opencontainers/go-digest"
)

// ErrExists is returned by Writer when the entry is already cached (maybe
// by a writer the caller waited for).
var ErrExists = errors.New("already in cache")

// Writer fills one cache entry. Write the bytes, then Commit or Abort
// exactly once. A Writer holds the key's lock: other writers of the same
// digest wait until it is done.
type Writer struct {
	d      *Dir
	dg     digest.Digest // the key
	f      *os.File
	h      hash.Hash // of want's algorithm, nil when want is empty
	n      int64
	unlock func()
	done   bool
	// want is the digest the content must hash to: dg itself, a content
	// digest given to NamedWriter, or empty (PutNamed: not checked).
	want digest.Digest
	size int64 // the content's size, or -1 when not checked
	// reserved is the room the writer holds in the cache until it is
	// committed or aborted: size, or 0 when the size is not known.
	reserved int64
}

// Writer starts writing the entry for dg. If another writer holds dg, it
// waits for it (or for ctx). If dg is (then) cached, it returns ErrExists.
func (d *Dir) Writer(ctx context.Context, dg digest.Digest) (*Writer, error) {
	return d.writer(ctx, dg, dg, -1)
}

// NamedWriter is Writer for an entry filed under key, a name chosen by
// the caller, whose content must hash to want (unless want is empty) and
// be size bytes long (unless size is negative): Commit refuses anything
// else with ErrCorrupt. A reader of the entry (GetNamed, ReadNamedAt with
// the same want) can then trust it as it trusts an entry filed under its
// own digest. key may be want itself: an entry filed under its digest
// whose size is known.
//
// With a size, the room is made (evicting) and held when the writer is
// created, so that a large entry does not fill the disk on its way in;
// an entry that cannot fit fails here with ErrTooLarge.
func (d *Dir) NamedWriter(ctx context.Context, key, want digest.Digest, size int64) (*Writer, error) {
	if want != "" {
		if err := want.Validate(); err != nil {
			return nil, fmt.Errorf("write %s: %w", key, err)
		}
	}
	return d.writer(ctx, key, want, size)
}

func (d *Dir) writer(ctx context.Context, dg, want digest.Digest, size int64) (*Writer, error) {
	if _, err := d.path(dg); err != nil {
		return nil, err
	}
	unlock, err := d.keys.lock(ctx, dg)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", dg, err)
	}
	if d.Has(dg) {
		unlock()
		return nil, fmt.Errorf("write %s: %w", dg, ErrExists)
	}
	d.retryFull()
	w := &Writer{d: d, dg: dg, unlock: unlock, want: want, size: size}
	if size >= 0 {
		if err := d.reserve(dg, size); err != nil {
			unlock()
			return nil, err
		}
		w.reserved = size
	}
	err = d.fault("create")
	if err == nil {
		w.f, err = os.CreateTemp(filepath.Join(d.root, "tmp"), dg.Encoded()+".*")
	}
	if err != nil {
		w.release()
		unlock()
		return nil, fmt.Errorf("write %s: %w", dg, d.failed(err))
	}
	if want != "" {
		w.h = want.Algorithm().Hash()
	}
	return w, nil
}

// reserve makes room for size more bytes and holds it.
func (d *Dir) reserve(dg digest.Digest, size int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if size > d.max {
		return fmt.Errorf("write %s: %d bytes, the cache holds at most %d: %w", dg, size, d.max, ErrTooLarge)
	}
	if size > d.limit || !d.evictLocked(size) {
		return fmt.Errorf("write %s: %d bytes do not fit under the cache's limit of %d (%d in use, pinned or being written): %w",
			dg, size, d.limit, d.usage+d.reserved, ErrTooLarge)
	}
	d.reserved += size
	return nil
}

// release gives back the room w holds.
func (w *Writer) release() {
	if w.reserved == 0 {
		return
	}
	w.d.mu.Lock()
	w.d.reserved -= w.reserved
	w.d.mu.Unlock()
	w.reserved = 0
}

// Write appends p to the entry.
func (w *Writer) Write(p []byte) (int, error) {
	if err := w.d.fault("write"); err != nil {
		return 0, w.d.failed(err)
	}
	n, err := w.f.Write(p)
	if w.h != nil {
		w.h.Write(p[:n])
	}
	w.n += int64(n)
	if err != nil {
		return n, w.d.failed(err)
	}
	return n, nil
}

// Commit checks that the bytes written hash to the digest (and, for a
// NamedWriter, have the size promised), makes room, syncs and moves the
// entry into place. On any error the entry is discarded.
func (w *Writer) Commit() error {
	if w.done {
		return fmt.Errorf("commit %s: writer already finished", w.dg)
	}
	defer w.finish()
	if w.size >= 0 && w.n != w.size {
		return fmt.Errorf("commit %s: %d bytes written, want %d: %w", w.dg, w.n, w.size, ErrCorrupt)
	}
	if w.h != nil {
		if got := digest.NewDigest(w.want.Algorithm(), w.h); got != w.want {
			return fmt.Errorf("commit %s: content hashes to %s, want %s: %w", w.dg, got, w.want, ErrCorrupt)
		}
	}
	err := w.d.fault("sync")
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("commit %s: %w", w.dg, w.d.failed(err))
	}
	return w.d.install(w)
}

// Abort discards the entry. Calling it after Commit is a no-op, so it can
// be deferred.
func (w *Writer) Abort() error {
	if w.done {
		return nil
	}
	w.finish()
	return nil
}

func (w *Writer) finish() {
	w.done = true
	w.f.Close()
	os.Remove(w.f.Name()) // gone already after a successful rename
	w.release()
	w.unlock()
}

// install renames the verified temporary file of w into place, evicting
// to make room first. The entry is known good: it needs no check when
// read (unless it was written unchecked, by PutNamed).
func (d *Dir) install(w *Writer) error {
	p, _ := d.path(w.dg)
	d.mu.Lock()
	d.reserved -= w.reserved // the writer's room becomes the commit's
	w.reserved = 0
	fits := w.n <= d.limit && d.evictLocked(w.n)
	if fits {
		d.reserved += w.n // so that concurrent commits cannot overshoot
	}
	d.mu.Unlock()
	if !fits {
		return fmt.Errorf("commit %s (%d bytes): %w", w.dg, w.n, ErrTooLarge)
	}
	err := d.fault("rename")
	if err == nil {
		err = os.MkdirAll(filepath.Dir(p), 0o700)
	}
	if err == nil {
		err = os.Rename(w.f.Name(), p)
	}
	d.mu.Lock()
	d.reserved -= w.n
	if _, ok := d.items[w.dg]; !ok && err == nil {
		d.items[w.dg] = d.lru.PushFront(&item{d: w.dg, size: w.n, verified: w.want})
		d.usage += w.n
	}
	d.mu.Unlock()
	if err != nil {
		return fmt.Errorf("commit %s: %w", w.dg, d.failed(err))
	}
	return nil
}

// Put stores b under dg in one call, keeping a copy in memory. An entry
// that is already cached is not an error.
func (d *Dir) Put(ctx context.Context, dg digest.Digest, b []byte) error {
	if err := d.PutCold(ctx, dg, b); err != nil {
		return err
	}
	d.mem.add(dg, b)
	return nil
}

// PutCold is Put without the copy in memory, for content nobody is
// reading yet (background fetch): it does not push hot entries out of
// the memory LRU.
func (d *Dir) PutCold(ctx context.Context, dg digest.Digest, b []byte) error {
	w, err := d.Writer(ctx, dg)
	return writeAll(w, err, dg, b)
}

// PutNamed stores b under key, a name chosen by the caller rather than
// the digest of b (say, the blob ranges a TOC was read from, named after
// the TOC digest). The content is not checked at commit, so the caller
// must verify what it reads back. An entry already present is kept.
func (d *Dir) PutNamed(ctx context.Context, key digest.Digest, b []byte) error {
	w, err := d.NamedWriter(ctx, key, "", -1)
	return writeAll(w, err, key, b)
}

// writeAll writes b through w, the writer (or error) of a new entry
// key, and commits it; an entry already present is not an error.
func writeAll(w *Writer, err error, key digest.Digest, b []byte) error {
	if errors.Is(err, ErrExists) {
		return nil
	}
	if err != nil {
		return err
	}
	defer w.Abort()
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return w.Commit()
}
