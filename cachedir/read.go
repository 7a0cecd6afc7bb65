// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Reads. Get, ReadAll and ReadAt read the entry a key names, of either
// kind. Each checks the entry once per process, before handing out a
// byte, against what the key says its bytes hash to (verify.go); an
// unchecked record is handed out as it is, for its reader to verify. An
// entry that is not what the key says (checked against another digest,
// or of another size than a sized key's) is a miss for that reader.

// Get opens the entry k names. The caller closes the file. An *os.File is
// returned, not a reader, so that FUSE passthrough and splice stay
// possible. Since the caller may hand the file to someone who reads it
// without the cache (the kernel, for passthrough), Get also checks the
// file's length against the entry's, with one fstat each time: a file cut
// or grown since its check is removed and a miss.
func (d *Dir) Get(k Key) (*os.File, error) {
	if _, ok := d.size(k, true); !ok {
		return nil, fmt.Errorf("get %s: %w", k, ErrNotFound)
	}
	f, err := d.openChecked(k)
	if err != nil {
		return nil, err
	}
	if err := d.checkLength(k, f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// checkLength removes the entry k, open as f, if f's length is not the
// entry's.
func (d *Dir) checkLength(k Key, f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("get %s: %w", k, err)
	}
	d.mu.Lock()
	el, ok := d.itemLocked(k.id())
	if !ok {
		d.mu.Unlock()
		return fmt.Errorf("get %s: %w", k, ErrNotFound)
	}
	it := el.Value.(*item)
	if fi.Size() == it.size {
		d.mu.Unlock()
		return nil
	}
	d.removeLocked(it)
	d.mu.Unlock()
	p, _ := d.path(k.id())
	d.log.Warn("cache entry has the wrong length: removed", "path", p, "bytes", fi.Size(), "size", it.size)
	return fmt.Errorf("get %s: %d bytes on disk, want %d: %w: %w", k, fi.Size(), it.size, ErrNotFound, ErrCorrupt)
}

// openChecked opens the entry k names and checks it (once per process).
func (d *Dir) openChecked(k Key) (*os.File, error) {
	if k.want != "" {
		if err := k.want.Validate(); err != nil {
			return nil, fmt.Errorf("get %s: %w", k, err)
		}
	}
	f, err := d.openEntry(k)
	if err != nil {
		return nil, err
	}
	if err := d.verify(k, f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ReadAll returns the whole entry k names, from memory when it is there
// (content only), if it is at most max bytes: the caller's bound on the
// memory the read takes. The entry's size (taken from the disk) decides
// the allocation only after the entry is checked and found within max. A
// disk read is one pread on a file kept open (an LRU of openFiles files);
// a file not open yet costs one open more.
func (d *Dir) ReadAll(k Key, max int64) ([]byte, error) {
	if b, ok := d.memGet(k); ok && int64(len(b)) <= max {
		d.size(k, true)
		return b, nil
	}
	if _, err := d.file(k); err != nil {
		return nil, err
	}
	size, ok := d.size(k, false)
	if !ok {
		return nil, fmt.Errorf("get %s: %w", k, ErrNotFound)
	}
	if size > max {
		return nil, fmt.Errorf("read %s: %d bytes, more than %d", k, size, max)
	}
	b := make([]byte, size)
	if n, err := d.ReadAt(k, b, 0); int64(n) != size {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read %s: %w", k, err)
	}
	if k.kind == kindContent {
		d.mem.add(k.name, b)
	}
	return b, nil
}

// ReadAt reads len(p) bytes of the entry k names from off into p, from
// memory when the entry is there (content only) and otherwise with one
// pread on a cache file kept open: a reader of part of a large entry
// reads only that part (after the entry's first check in the process).
// It returns io.EOF when fewer bytes remain, like io.ReaderAt.
func (d *Dir) ReadAt(k Key, p []byte, off int64) (int, error) {
	if b, ok := d.memGet(k); ok {
		d.size(k, true)
		if off >= int64(len(b)) {
			return 0, io.EOF
		}
		n := copy(p, b[off:])
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}
	var err error
	for range 2 {
		var f *os.File
		if f, err = d.file(k); err != nil {
			return 0, err
		}
		var n int
		if n, err = f.ReadAt(p, off); !errors.Is(err, os.ErrClosed) {
			return n, err
		}
		// closed by an eviction meanwhile: look again
	}
	return 0, fmt.Errorf("read %s: %w", k, err)
}

// file returns an open file of the entry k names, checked: the one kept
// open for it, or one it opens, checks and keeps open. It marks the
// entry used.
func (d *Dir) file(k Key) (*os.File, error) {
	if _, ok := d.size(k, true); !ok { // present, so k names a valid path
		return nil, fmt.Errorf("get %s: %w", k, ErrNotFound)
	}
	if f, ok := d.fds.get(k.id(), k.want); ok {
		return f, nil
	}
	f, err := d.openChecked(k)
	if err != nil {
		return nil, err
	}
	return d.fds.add(k.id(), k.want, f), nil
}

// openEntry opens the file of the entry k names; a file gone behind our
// back is a miss.
func (d *Dir) openEntry(k Key) (*os.File, error) {
	p, err := d.path(k.id())
	if err != nil {
		return nil, err
	}
	f, err := openFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		d.forget(k.id()) // removed behind our back
		return nil, fmt.Errorf("get %s: %w", k, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", k, err)
	}
	return f, nil
}

// present reports whether an entry is filed under id, whatever its size.
func (d *Dir) present(id entryID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.itemLocked(id)
	return ok
}

// size returns the size of the entry k names on disk, if it is there and
// of the size k says; with touch, it marks the entry used.
func (d *Dir) size(k Key, touch bool) (int64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	el, ok := d.itemLocked(k.id())
	if !ok {
		return 0, false
	}
	size := el.Value.(*item).size
	if k.size >= 0 && size != k.size {
		return 0, false
	}
	if touch {
		d.lru.MoveToFront(el)
	}
	return size, true
}
