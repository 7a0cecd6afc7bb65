// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	digest "github.com/opencontainers/go-digest"
)

// Reads. Get, ReadAll and ReadAt read an entry filed under the digest of
// its content; GetNamed and ReadNamedAt read one filed under a name
// (NamedWriter), given what its content must hash to. Each checks the
// entry once per process before handing out a byte (verify.go). ReadNamed
// reads an entry of PutNamed, whose content the caller checks itself.

// Get opens the entry for dg, checked to hash to dg. The caller closes the
// file. An *os.File is returned, not a reader, so FUSE passthrough and
// splice stay possible.
func (d *Dir) Get(dg digest.Digest) (*os.File, error) { return d.GetNamed(dg, dg) }

// GetNamed opens the entry filed under key, checked to hash to want. The
// caller closes the file.
func (d *Dir) GetNamed(key, want digest.Digest) (*os.File, error) {
	if _, ok := d.touchSize(key); !ok {
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	return d.openChecked(key, want)
}

// openChecked opens the entry filed under key and checks that it hashes
// to want (once per process).
func (d *Dir) openChecked(key, want digest.Digest) (*os.File, error) {
	if err := want.Validate(); err != nil {
		return nil, fmt.Errorf("get %s: %w", key, err)
	}
	f, err := d.openEntry(key)
	if err != nil {
		return nil, err
	}
	if err := d.verify(key, want, f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// ReadAll returns the whole entry for dg, from memory when it is there.
// A disk read is one pread on a file kept open (an LRU of openFiles
// files); a file not open yet costs one open more, and its first read in
// the process a check of the whole file, made before the entry's size
// (taken from the disk) decides an allocation.
func (d *Dir) ReadAll(dg digest.Digest) ([]byte, error) {
	if b, ok := d.mem.get(dg); ok {
		d.touch(dg)
		return b, nil
	}
	if _, err := d.file(dg, dg); err != nil {
		return nil, err
	}
	size, ok := d.Size(dg)
	if !ok {
		return nil, fmt.Errorf("get %s: %w", dg, ErrNotFound)
	}
	b := make([]byte, size)
	if n, err := d.ReadAt(dg, b, 0); int64(n) != size {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read %s: %w", dg, err)
	}
	d.mem.add(dg, b)
	return b, nil
}

// ReadAt reads len(p) bytes of the entry for dg from off into p, from
// memory when the entry is there and otherwise with one pread on a cache
// file kept open: a reader of part of a large entry reads only that part
// (after the entry's first check in the process). It returns io.EOF when
// fewer bytes remain, like io.ReaderAt.
func (d *Dir) ReadAt(dg digest.Digest, p []byte, off int64) (int, error) {
	if b, ok := d.mem.get(dg); ok {
		d.touch(dg)
		if off >= int64(len(b)) {
			return 0, io.EOF
		}
		n := copy(p, b[off:])
		if n < len(p) {
			return n, io.EOF
		}
		return n, nil
	}
	return d.ReadNamedAt(dg, dg, p, off)
}

// ReadNamedAt is ReadAt for the entry filed under key, checked to hash to
// want. The memory LRU holds content under its own digest only, so it is
// not looked at unless key is want.
func (d *Dir) ReadNamedAt(key, want digest.Digest, p []byte, off int64) (int, error) {
	var err error
	for range 2 {
		var f *os.File
		if f, err = d.file(key, want); err != nil {
			return 0, err
		}
		var n int
		if n, err = f.ReadAt(p, off); !errors.Is(err, os.ErrClosed) {
			return n, err
		} // closed by an eviction meanwhile: look again
	}
	return 0, fmt.Errorf("read %s: %w", key, err)
}

// file returns an open file of the entry key, checked to hash to want:
// the one kept open for it, or one it opens, checks and keeps open. It
// marks the entry used.
func (d *Dir) file(key, want digest.Digest) (*os.File, error) {
	if _, ok := d.touchSize(key); !ok { // present, so key is a valid digest
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	if f, ok := d.fds.get(key, want); ok {
		return f, nil
	}
	f, err := d.openChecked(key, want)
	if err != nil {
		return nil, err
	}
	return d.fds.add(key, want, f), nil
}

// ReadNamed returns the whole entry filed under key by PutNamed, unchecked
// (the caller verifies it), if it is at most max bytes.
func (d *Dir) ReadNamed(key digest.Digest, max int64) ([]byte, error) {
	size, ok := d.touchSize(key)
	if !ok {
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	if size > max {
		return nil, fmt.Errorf("read %s: %d bytes, more than %d", key, size, max)
	}
	f, err := d.openEntry(key)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, size)
	if n, err := f.ReadAt(b, 0); int64(n) != size {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return b, nil
}

// openEntry opens the file of the entry key; a file gone behind our back
// is a miss.
func (d *Dir) openEntry(key digest.Digest) (*os.File, error) {
	p, err := d.path(key)
	if err != nil {
		return nil, err
	}
	f, err := openFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		d.forget(key) // removed behind our back
		return nil, fmt.Errorf("get %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return f, nil
}

// touchSize marks dg as just used and returns its size.
func (d *Dir) touchSize(dg digest.Digest) (int64, bool) { return d.size(dg, true) }

// Size returns the size of the entry for dg on disk, without marking it
// used.
func (d *Dir) Size(dg digest.Digest) (int64, bool) { return d.size(dg, false) }

func (d *Dir) size(dg digest.Digest, touch bool) (int64, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	el, ok := d.items[dg]
	if !ok {
		return 0, false
	}
	if touch {
		d.lru.MoveToFront(el)
	}
	return el.Value.(*item).size, true
}
