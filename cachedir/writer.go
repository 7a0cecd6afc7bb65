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
}

// Writer starts writing the entry for dg. If another writer holds dg, it
// waits for it (or for ctx). If dg is (then) cached, it returns ErrExists.
func (d *Dir) Writer(ctx context.Context, dg digest.Digest) (*Writer, error) {
	return d.writer(ctx, dg, dg, -1)
}

// NamedWriter is Writer for an entry filed under key, a name chosen by
// the caller, whose content must hash to want (unless want is empty) and
// be size bytes long (unless size is negative): Commit refuses anything
// else with ErrCorrupt. A reader of the entry can then trust it as it
// trusts an entry filed under its own digest, provided that no content
// can hash to key (see docs/design.md, "Whole-file entries").
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
	f, err := os.CreateTemp(filepath.Join(d.root, "tmp"), dg.Encoded()+".*")
	if err != nil {
		unlock()
		return nil, fmt.Errorf("write %s: %w", dg, err)
	}
	w := &Writer{d: d, dg: dg, f: f, unlock: unlock, want: want, size: size}
	if want != "" {
		w.h = want.Algorithm().Hash()
	}
	return w, nil
}

// Write appends p to the entry.
func (w *Writer) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if w.h != nil {
		w.h.Write(p[:n])
	}
	w.n += int64(n)
	return n, err
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
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("commit %s: %w", w.dg, err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("commit %s: %w", w.dg, err)
	}
	return w.d.install(w.f.Name(), w.dg, w.n)
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
	w.unlock()
}

// install renames a verified temporary file into place, evicting to make
// room first.
func (d *Dir) install(tmp string, dg digest.Digest, size int64) error {
	p, _ := d.path(dg)
	d.mu.Lock()
	fits := size <= d.max && d.evictLocked(size)
	if fits {
		d.reserved += size // so that concurrent commits cannot overshoot
	}
	d.mu.Unlock()
	if !fits {
		return fmt.Errorf("commit %s (%d bytes): %w", dg, size, ErrTooLarge)
	}
	err := os.MkdirAll(filepath.Dir(p), 0o700)
	if err == nil {
		err = os.Rename(tmp, p)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reserved -= size
	if err != nil {
		return fmt.Errorf("commit %s: %w", dg, err)
	}
	if _, ok := d.items[dg]; !ok {
		d.items[dg] = d.lru.PushFront(&item{dg, size})
		d.usage += size
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
