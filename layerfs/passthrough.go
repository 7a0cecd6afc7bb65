// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"context"
	"errors"
	"io"
	"os"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
)

// FUSE passthrough (Linux >= 6.9, CAP_SYS_ADMIN): a file opened with
// FOPEN_PASSTHROUGH and a backing file is read by the kernel from that
// file, without a READ request to the daemon. A regular file gets one
// when its whole content is one cache file (store.Layer.CachedFile: a
// single-chunk file, or the whole-file entry of a big one). go-fuse
// registers the backing file on the first such open of an inode and
// shares it with the inode's later opens; when registration fails (not
// root, old kernel, a cache on a stacked file system) it stops trying for
// the mount, and reads of these handles come to the daemon, which reads
// the same cache file.
//
// The kernel puts every open file of an inode in one mode: while a
// passthrough open of it exists, an open without passthrough fails with
// EIO, and the other way round. So a fileNode picks how to read when its
// first handle opens and keeps that for every handle opened until the
// last is released (our count only drops on RELEASE, after the kernel has
// dropped its own, so it never says "idle" while the kernel still has the
// file open).
//
// A cache file may be evicted while open: its open descriptor (and the
// kernel's reference to the backing file) keeps it readable. CachedFile
// checks its content against its digest (once per store process) and its
// size before handing it out.

// minPassthroughSize is the smallest file opened with passthrough. A
// smaller file is one FUSE read at most, and passthrough's cost per open
// (opening and registering the cache file) is not repaid: for 32 KiB
// files with their page cache dropped it measured slower than the daemon,
// which often has the chunk in its memory LRU (BenchmarkCachedFileRead).
const minPassthroughSize = 1 << 20

// openHandle returns the handle of a new open of n: on the cache file
// the open handles already read, or, when none is open, on the one
// CachedFile gives (if passthrough is on), else through the store.
func (n *fileNode) openHandle() fusefs.FileHandle {
	var f *os.File
	if n.t.passthrough && n.e.Size >= minPassthroughSize && n.idle() {
		f, _ = n.t.l.CachedFile(n.e) // opens a file: not under n.mu
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.opens == 0 {
		n.backing = f
	} else if f != nil {
		f.Close() // another open came first and chose
	}
	n.opens++
	if n.backing != nil {
		return &cachedHandle{n: n, f: n.backing}
	}
	return &storeHandle{n: n}
}

// idle reports whether no handle of n is open.
func (n *fileNode) idle() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.opens == 0
}

// release ends one handle; the last closes the cache file.
func (n *fileNode) release() {
	n.mu.Lock()
	n.opens--
	var f *os.File
	if n.opens == 0 {
		f, n.backing = n.backing, nil
	}
	n.mu.Unlock()
	if f != nil {
		f.Close()
	}
}

// storeHandle is an open regular file read through the store.
type storeHandle struct{ n *fileNode }

var _ fusefs.FileReleaser = (*storeHandle)(nil)

func (h *storeHandle) Release(context.Context) syscall.Errno {
	h.n.release()
	return 0
}

// cachedHandle is an open regular file whose content is the cache file f,
// shared by the file's open handles. The kernel reads f directly when
// passthrough is granted; otherwise fileNode.Read reads it here.
type cachedHandle struct {
	n *fileNode
	f *os.File
}

var (
	_ fusefs.FilePassthroughFder = (*cachedHandle)(nil)
	_ fusefs.FileReleaser        = (*cachedHandle)(nil)
)

func (h *cachedHandle) PassthroughFd() (int, bool) {
	return int(h.f.Fd()), !h.n.t.noBackingFd
}

// readAt reads into dest, not with a splice from f: go-fuse's splice needs
// a pipe larger than a 1 MiB read and the 1 MiB pipe-max-size allows.
func (h *cachedHandle) readAt(dest []byte, off int64) (int, error) {
	k, err := h.f.ReadAt(dest, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return k, err
}

func (h *cachedHandle) Release(context.Context) syscall.Errno {
	h.n.release()
	return 0
}
