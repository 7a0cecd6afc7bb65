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
// exactly once. A Writer holds the entry's lock: other writers of the
// same entry wait until it is done.
type Writer struct {
	d      *Dir
	k      Key // what the entry is and what its bytes must be
	f      *os.File
	h      hash.Hash // of k.want's algorithm; nil for an unchecked record
	n      int64
	unlock func()
	done   bool
	// reserved is the room the writer holds in the cache until it is
	// committed or aborted: k's size, or 0 when k says none.
	reserved int64
}

// Writer starts writing the entry k names. If another writer holds it, it
// waits for it (or for ctx). If the entry is (then) cached, whatever its
// size, it returns ErrExists.
//
// Commit checks the bytes against what k says: a content key's bytes must
// hash to its digest, a record's to its want (an unchecked record's are
// not checked), and a sized key's must have its size. A reader of the
// entry can then trust it as it trusts every entry. With a size, the room
// is made (evicting) and held when the writer is created, so that a large
// entry does not fill the disk on its way in; an entry that cannot fit
// fails here with ErrTooLarge.
func (d *Dir) Writer(ctx context.Context, k Key) (*Writer, error) {
	id := k.id()
	if _, err := d.path(id); err != nil {
		return nil, err
	}
	if k.want != "" {
		if err := k.want.Validate(); err != nil {
			return nil, fmt.Errorf("write %s: %w", k, err)
		}
	}
	unlock, err := d.keys.lock(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", k, err)
	}
	if d.present(id) {
		unlock()
		return nil, fmt.Errorf("write %s: %w", k, ErrExists)
	}
	d.retryFull()
	w := &Writer{d: d, k: k, unlock: unlock}
	if k.size >= 0 {
		if err := d.reserve(k, k.size); err != nil {
			unlock()
			return nil, err
		}
		w.reserved = k.size
	}
	err = d.fault("create")
	if err == nil {
		w.f, err = os.CreateTemp(filepath.Join(d.root, "tmp"), k.name.Encoded()+".*")
	}
	if err != nil {
		w.release()
		unlock()
		return nil, fmt.Errorf("write %s: %w", k, d.failed(err))
	}
	if k.want != "" {
		w.h = k.want.Algorithm().Hash()
	}
	return w, nil
}

// reserve makes room for size more bytes and holds it.
func (d *Dir) reserve(k Key, size int64) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if size > d.max {
		return fmt.Errorf("write %s: %d bytes, the cache holds at most %d: %w", k, size, d.max, ErrTooLarge)
	}
	if size > d.limit || !d.evictLocked(size) {
		return fmt.Errorf("write %s: %d bytes do not fit under the cache's limit of %d (%d in use, pinned or being written): %w",
			k, size, d.limit, d.usage+d.reserved, ErrTooLarge)
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

// Commit checks that the bytes written are what the key says (their
// digest, their size), makes room, syncs and moves the entry into place.
// On any error the entry is discarded.
func (w *Writer) Commit() error {
	if w.done {
		return fmt.Errorf("commit %s: writer already finished", w.k)
	}
	defer w.finish()
	if w.k.size >= 0 && w.n != w.k.size {
		return fmt.Errorf("commit %s: %d bytes written, want %d: %w", w.k, w.n, w.k.size, ErrCorrupt)
	}
	if w.h != nil {
		if got := digest.NewDigest(w.k.want.Algorithm(), w.h); got != w.k.want {
			return fmt.Errorf("commit %s: content hashes to %s, want %s: %w", w.k, got, w.k.want, ErrCorrupt)
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
		return fmt.Errorf("commit %s: %w", w.k, w.d.failed(err))
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
// read (an unchecked record is never checked).
func (d *Dir) install(w *Writer) error {
	id := w.k.id()
	p, _ := d.path(id)
	d.mu.Lock()
	d.reserved -= w.reserved // the writer's room becomes the commit's
	w.reserved = 0
	fits := w.n <= d.limit && d.evictLocked(w.n)
	if fits {
		d.reserved += w.n // so that concurrent commits cannot overshoot
	}
	d.mu.Unlock()
	if !fits {
		return fmt.Errorf("commit %s (%d bytes): %w", w.k, w.n, ErrTooLarge)
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
	if _, ok := d.itemLocked(id); !ok && err == nil {
		d.items[id.kind][id.name] = d.lru.PushFront(&item{id: id, size: w.n, verified: w.k.want})
		d.usage += w.n
	}
	d.mu.Unlock()
	if err != nil {
		return fmt.Errorf("commit %s: %w", w.k, d.failed(err))
	}
	return nil
}

// Put stores b as the entry k names, in one call: Writer, Write, Commit,
// with k sized to len(b) when it says no size (so that the room is made
// first). An entry that is already cached is not an error. Put keeps no
// copy in memory: for content that is being read, Remember does.
func (d *Dir) Put(ctx context.Context, k Key, b []byte) error {
	if k.size < 0 {
		k = k.Sized(int64(len(b)))
	}
	w, err := d.Writer(ctx, k)
	if errors.Is(err, ErrExists) {
		return nil
	}
	if err != nil {
		return err
	}
	defer w.Abort()
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", k, err)
	}
	return w.Commit()
}
