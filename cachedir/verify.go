// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	digest "github.com/opencontainers/go-digest"
)

// An entry is checked against what its content must hash to (a content
// entry's digest, a record's want) once per process, before its first
// byte is handed out: the bytes on disk are not trusted across a restart
// (a crash, a disk fault, a tampered cache). An entry this process
// committed is known good; an entry found on disk at Open is not, until a
// read checks it. Unchecked records are their readers' to verify.
//
// A mismatch, or an error reading the file, removes the entry and turns
// the read into a miss (ErrNotFound, also wrapping ErrCorrupt): the caller
// fetches the content again from where it came from.

// hashBuf is the size of the buffer a check reads an entry with: the
// memory a check needs, whatever the entry's size.
const hashBuf = 256 << 10

var hashBufs = sync.Pool{New: func() any { return new([hashBuf]byte) }}

// hashFile returns the digest (of algorithm alg) of f's content and its
// length, reading with pread from offset 0 to the end of the file.
func hashFile(f *os.File, alg digest.Algorithm) (digest.Digest, int64, error) {
	buf := hashBufs.Get().(*[hashBuf]byte)
	defer hashBufs.Put(buf)
	h := alg.Hash()
	var n int64
	for {
		k, err := f.ReadAt(buf[:], n)
		h.Write(buf[:k])
		n += int64(k)
		if errors.Is(err, io.EOF) {
			return digest.NewDigest(alg, h), n, nil
		}
		if err != nil {
			return "", n, err
		}
	}
}

// verify makes sure that the entry k names, open as f, has been checked
// in this process to hash to k.want, hashing f if it has not (an
// unchecked record, whose want is empty, is not checked). One goroutine
// hashes an entry; the others wait for it (a hash of one local file, no
// network wait). An entry checked against another digest is not what
// the caller wants: a miss, the entry kept. On a mismatch the entry is
// removed.
func (d *Dir) verify(k Key, f *os.File) error {
	if k.want == "" {
		return nil
	}
	for {
		d.mu.Lock()
		el, ok := d.itemLocked(k.id())
		if !ok {
			d.mu.Unlock()
			return fmt.Errorf("get %s: %w", k, ErrNotFound)
		}
		it := el.Value.(*item)
		switch {
		case it.verified == k.want:
			d.mu.Unlock()
			return nil
		case it.verified != "":
			d.mu.Unlock()
			return fmt.Errorf("get %s: it holds %s, not %s: %w", k, it.verified, k.want, ErrNotFound)
		case it.checking != nil:
			ch := it.checking
			d.mu.Unlock()
			<-ch
			continue
		}
		ch := make(chan struct{})
		it.checking = ch
		d.mu.Unlock()
		d.checks.Add(1)
		got, n, err := hashFile(f, k.want.Algorithm())
		good := err == nil && got == k.want && n == it.size
		d.mu.Lock()
		it.checking = nil
		if good {
			it.verified = k.want
		} else {
			// Removed before the waiters wake, so that none of them
			// checks the same bad file again.
			d.removeLocked(it)
		}
		d.mu.Unlock()
		close(ch)
		if good {
			return nil
		}
		return d.reject(k, it, got, n, err)
	}
}

// removeLocked removes the entry it, if it is still in the cache, after
// a failed check. d.mu must be held.
func (d *Dir) removeLocked(it *item) {
	el, ok := d.itemLocked(it.id)
	if !ok || el.Value.(*item) != it {
		return
	}
	d.dropLocked(el)
	// Unlinked under mu, like an eviction: no writer of the entry can
	// have installed a new file meanwhile (writers start only when the
	// entry is absent).
	p, _ := d.path(it.id)
	if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		d.log.Warn("remove corrupt cache entry", "path", p, "err", rerr)
	}
}

// reject logs why the entry it failed its check against k (verify removed
// it) and returns the miss to report.
func (d *Dir) reject(k Key, it *item, got digest.Digest, n int64, err error) error {
	p, _ := d.path(it.id)
	if err != nil {
		d.log.Warn("cache entry unreadable: removed", "path", p, "want", k.want.String(), "err", err)
		return fmt.Errorf("get %s: %w: %w (%w)", k, ErrNotFound, ErrCorrupt, err)
	}
	d.log.Warn("cache entry corrupt: removed", "path", p, "want", k.want.String(), "got", got.String(),
		"bytes", n, "size", it.size)
	return fmt.Errorf("get %s: content hashes to %s (%d bytes), want %s (%d bytes): %w: %w",
		k, got, n, k.want, it.size, ErrNotFound, ErrCorrupt)
}
