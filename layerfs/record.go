// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"sync"

	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/store/index"
)

// Op is the kind of access reported to a [Recorder].
type Op uint8

// The accesses a Recorder hears about, all of regular files in diff trees.
const (
	// OpLookup is a lookup that found a regular file (stat, the path
	// walk of an open, overlayfs looking through its layers). The
	// attributes come from the table of contents: no content is read.
	OpLookup Op = iota + 1
	// OpOpen is an open of a regular file (including execve and the
	// dynamic loader's opens before mmap).
	OpOpen
	// OpRead is a read of a regular file's content that reached the
	// server, that is, one the kernel's page cache could not answer.
	OpRead
)

func (o Op) String() string {
	switch o {
	case OpLookup:
		return "lookup"
	case OpOpen:
		return "open"
	case OpRead:
		return "read"
	}
	return "unknown"
}

// Access is one access to a regular file of a layer's diff tree.
type Access struct {
	// Layer is the layer's blob digest (store.LayerDesc.Digest), whichever
	// name (blob or TOC digest) storage used.
	Layer digest.Digest
	// Path is the file's name in the layer, relative to its root and
	// cleaned ("usr/bin/python3.11"). A hard link reports the name of the
	// entry that holds the content.
	Path string
	// Size is the file's size in bytes.
	Size int64
	Op   Op
}

// Recorder is told about lookups, opens and reads of regular files in
// diff trees, in the order the server handles them (see
// Options.Recorder). Directories, symbolic links, devices and whiteouts
// are never reported. Record is called on the request path, in parallel,
// so it must be safe for concurrent use, fast, and must not access the
// mount.
type Recorder interface {
	Record(a Access)
}

// record reports an access to e to t's Recorder, if there is one.
func (t *diffTree) record(e *index.Entry, op Op) {
	if t.rec == nil || e.Type != index.TypeReg {
		return
	}
	t.rec.Record(Access{Layer: t.l.Desc().Digest, Path: e.Name, Size: e.Size, Op: op})
}

// recordLookup reports a lookup that found d, unless d is a whiteout.
func (t *diffTree) recordLookup(d dirent) {
	if !d.whiteout {
		t.record(d.e, OpLookup)
	}
}

// RecordedFile is a file a [FileLog] kept.
type RecordedFile struct {
	Layer digest.Digest
	Path  string
	Size  int64
}

// FileLog is a Recorder that keeps the regular files whose content was
// opened or read, once each, in the order of their first open or read.
// Lookups alone are not kept: they need only the table of contents. It is
// safe for concurrent use; the zero value is ready.
type FileLog struct {
	// mu guards the fields below.
	mu    sync.Mutex
	seen  map[fileKey]struct{}
	files []RecordedFile
}

type fileKey struct {
	layer digest.Digest
	path  string
}

var _ Recorder = (*FileLog)(nil)

// Record keeps a's file if it is opened or read for the first time.
func (f *FileLog) Record(a Access) {
	if a.Op != OpOpen && a.Op != OpRead {
		return
	}
	k := fileKey{a.Layer, a.Path}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.seen[k]; ok {
		return
	}
	if f.seen == nil {
		f.seen = map[fileKey]struct{}{}
	}
	f.seen[k] = struct{}{}
	f.files = append(f.files, RecordedFile{Layer: a.Layer, Path: a.Path, Size: a.Size})
}

// Files returns a copy of the files kept so far, in first-access order.
func (f *FileLog) Files() []RecordedFile {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]RecordedFile(nil), f.files...)
}
