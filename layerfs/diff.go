// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"context"
	"errors"
	"io"
	"os"
	"path"
	"sync"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/stargz-store/stargz-store/store"
	"github.com/stargz-store/stargz-store/store/index"
)

// diffTree is what the nodes of one layer's diff tree share. It is
// immutable: a layer's content never changes, so nothing below diff is
// ever invalidated, and the kernel caches entries, attributes, negative
// entries and pages for Options.DiffTimeout.
type diffTree struct {
	l     *store.Layer
	ix    *index.Index
	ttl   time.Duration
	reads *readFailures
	rec   Recorder // Options.Recorder, or nil
	// passthrough opens files whose content is one cache file on it
	// (Options.NoPassthrough unset); noBackingFd keeps the kernel from
	// reading it directly (tests of the daemon fallback).
	passthrough, noBackingFd bool
}

// diffNode is implemented by every node kind of a diff tree.
type diffNode interface {
	attrNode
	stable() fusefs.StableAttr
}

// newDiffNode builds the node for d. It dispatches on the entry's type,
// once, at construction; handlers never switch on node types.
func newDiffNode(t *diffTree, d dirent) diffNode {
	en := entryNode{t: t, e: d.e}
	if d.whiteout {
		return &whiteoutNode{entryNode: en}
	}
	switch d.e.Type {
	case index.TypeDir:
		return &dirNode{entryNode: en}
	case index.TypeReg:
		return &fileNode{entryNode: en}
	case index.TypeSymlink:
		return &symlinkNode{entryNode: en}
	}
	return &specialNode{entryNode: en}
}

// typeBits returns the S_IF* bits of an entry type.
func typeBits(t index.Type) uint32 {
	switch t {
	case index.TypeDir:
		return syscall.S_IFDIR
	case index.TypeReg:
		return syscall.S_IFREG
	case index.TypeSymlink:
		return syscall.S_IFLNK
	case index.TypeChar:
		return syscall.S_IFCHR
	case index.TypeBlock:
		return syscall.S_IFBLK
	}
	return syscall.S_IFIFO
}

// entryNode holds what every diff node is made of and answers the
// operations they share: attributes, xattrs and access.
type entryNode struct {
	t *diffTree
	e *index.Entry
}

func (n *entryNode) stable() fusefs.StableAttr {
	return fusefs.StableAttr{Mode: typeBits(n.e.Type), Ino: diffIno(n.t.l.ID(), n.e.ID)}
}

// fillAttr reports the entry as the tar had it: type, permission and
// setuid/setgid/sticky bits, owner, size, mtime (also as atime and
// ctime), link count and device number.
func (n *entryNode) fillAttr(out *fuse.Attr) {
	e := n.e
	out.Ino = diffIno(n.t.l.ID(), e.ID)
	out.Mode = typeBits(e.Type) | e.Mode&0o7777
	out.Size = uint64(e.Size)
	if e.Type == index.TypeSymlink {
		// Linux symlinks are always 0777; tar modes of symlinks vary.
		out.Mode = syscall.S_IFLNK | 0o777
		out.Size = uint64(len(e.LinkName))
	}
	out.Blocks = blocks(out.Size)
	out.Blksize = 4096
	out.Nlink = uint32(max(e.NumLink, 1))
	out.Uid, out.Gid = uint32(e.UID), uint32(e.GID)
	if e.Type == index.TypeChar || e.Type == index.TypeBlock {
		out.Rdev = uint32(mkdev(e.DevMajor, e.DevMinor))
	}
	setTimes(out, e.ModTime)
}

func (n *entryNode) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fillAttr(&out.Attr)
	out.SetTimeout(n.t.ttl)
	return 0
}

// Getxattr serves the entry's xattrs, and the opaque markers of an opaque
// directory. overlayfs asks for trusted.overlay.* on every lower
// directory, so this must stay cheap.
func (n *entryNode) Getxattr(_ context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	v, ok := xattr(n.t.ix, n.e, attr)
	if !ok {
		return 0, syscall.ENODATA
	}
	return copyXattr(dest, v)
}

func (n *entryNode) Listxattr(_ context.Context, dest []byte) (uint32, syscall.Errno) {
	return copyXattr(dest, xattrList(xattrNames(n.t.ix, n.e)))
}

// Access answers as for root on a read-only file system: writing is
// EROFS, executing needs an x bit (directories can always be searched),
// anything else, F_OK included, is granted. The kernel only asks for
// access(2) and chdir, since the mount has no default_permissions.
func (n *entryNode) Access(_ context.Context, mask uint32) syscall.Errno {
	switch {
	case mask&unixWOK != 0:
		return syscall.EROFS
	case mask&unixXOK != 0 && n.e.Type != index.TypeDir && n.e.Mode&0o111 == 0:
		return syscall.EACCES
	}
	return 0
}

// dirNode is a directory of a diff tree, shown with overlayfs's whiteout
// conventions (whiteout.go).
type dirNode struct {
	fusefs.Inode
	roNode
	entryNode
}

var (
	_ fusefs.NodeLookuper    = (*dirNode)(nil)
	_ fusefs.NodeReaddirer   = (*dirNode)(nil)
	_ fusefs.NodeGetattrer   = (*dirNode)(nil)
	_ fusefs.NodeGetxattrer  = (*dirNode)(nil)
	_ fusefs.NodeListxattrer = (*dirNode)(nil)
	_ fusefs.NodeAccesser    = (*dirNode)(nil)
	_ diffNode               = (*dirNode)(nil)
)

// Lookup finds name the way Readdir lists it. A miss is cached by the
// kernel for DiffTimeout (Options.NegativeTimeout): the tree never changes.
func (n *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	d, ok := lookupChild(n.t.ix, n.e, name)
	if !ok {
		return nil, syscall.ENOENT
	}
	n.t.recordLookup(d)
	ch := newDiffNode(n.t, d)
	ch.fillAttr(&out.Attr)
	out.SetEntryTimeout(n.t.ttl)
	out.SetAttrTimeout(n.t.ttl)
	return n.NewInode(ctx, ch, ch.stable()), 0
}

// Readdir lists "." and "..", then the directory sorted by name, with the
// inode numbers and types Lookup gives. overlayfs takes "." and ".." of a
// merged directory from its layers.
func (n *dirNode) Readdir(context.Context) (fusefs.DirStream, syscall.Errno) {
	kids := listChildren(n.t.ix, n.e)
	list := make([]fuse.DirEntry, 0, len(kids)+2)
	list = append(list,
		fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: n.stable().Ino},
		fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Ino: n.parentIno()})
	for _, d := range kids {
		st := newDiffNode(n.t, d).stable()
		list = append(list, fuse.DirEntry{Name: d.name, Mode: st.Mode, Ino: st.Ino})
	}
	return fusefs.NewListDirStream(list), 0
}

// parentIno is the inode number of the directory above; the diff root
// names itself, as a mount root does.
func (n *dirNode) parentIno() uint64 {
	if p, ok := n.t.ix.Lookup(path.Dir(n.e.Name)); ok && n.e != n.t.ix.Root() {
		return diffIno(n.t.l.ID(), p.ID)
	}
	return n.stable().Ino
}

// fileNode is a regular file of a diff tree. Reads are verified chunk
// reads through the store, or reads of one cache file (passthrough.go).
type fileNode struct {
	fusefs.Inode
	roNode
	entryNode

	// mu guards the fields below: how the open handles of the file read
	// it, which the kernel needs to be the same for all (passthrough.go).
	mu      sync.Mutex
	opens   int      // handles not released yet
	backing *os.File // the cache file they read, or nil: they read through the store
}

var (
	_ fusefs.NodeOpener      = (*fileNode)(nil)
	_ fusefs.NodeReader      = (*fileNode)(nil)
	_ fusefs.NodeGetattrer   = (*fileNode)(nil)
	_ fusefs.NodeGetxattrer  = (*fileNode)(nil)
	_ fusefs.NodeListxattrer = (*fileNode)(nil)
	_ fusefs.NodeAccesser    = (*fileNode)(nil)
	_ diffNode               = (*fileNode)(nil)
)

// Open keeps the page cache across opens: the content never changes.
// With passthrough on, a file whose content is one file of the disk cache
// is opened on it, FOPEN_PASSTHROUGH when the kernel grants it (go-fuse
// then drops KEEP_CACHE).
func (n *fileNode) Open(_ context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if errno := openReadOnly(flags); errno != 0 {
		return nil, 0, errno
	}
	n.t.record(n.e, OpOpen)
	return n.openHandle(), fuse.FOPEN_KEEP_CACHE, 0
}

// Read returns what is left of the file from off, short at the end.
func (n *fileNode) Read(ctx context.Context, fh fusefs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n.t.record(n.e, OpRead)
	var k int
	var err error
	if h, ok := fh.(*cachedHandle); ok {
		k, err = h.readAt(dest, off)
	} else {
		k, err = n.t.l.ReadAt(ctx, n.e, dest, off)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		errno := errnoFor(ctx, fileRead, err)
		n.t.reads.failed(ctx, n.t.l, n.e.Name, off, errno, err)
		return nil, errno
	}
	return fuse.ReadResultData(dest[:k]), 0
}

// symlinkNode is a symbolic link of a diff tree; its target is data and
// is never followed here.
type symlinkNode struct {
	fusefs.Inode
	roNode
	entryNode
}

var (
	_ fusefs.NodeReadlinker  = (*symlinkNode)(nil)
	_ fusefs.NodeGetattrer   = (*symlinkNode)(nil)
	_ fusefs.NodeGetxattrer  = (*symlinkNode)(nil)
	_ fusefs.NodeListxattrer = (*symlinkNode)(nil)
	_ diffNode               = (*symlinkNode)(nil)
)

func (n *symlinkNode) Readlink(context.Context) ([]byte, syscall.Errno) {
	return []byte(n.e.LinkName), 0
}

// specialNode is a character or block device or a FIFO of a diff tree.
// The kernel opens those itself; only their attributes come from here.
type specialNode struct {
	fusefs.Inode
	roNode
	entryNode
}

var (
	_ fusefs.NodeGetattrer   = (*specialNode)(nil)
	_ fusefs.NodeGetxattrer  = (*specialNode)(nil)
	_ fusefs.NodeListxattrer = (*specialNode)(nil)
	_ diffNode               = (*specialNode)(nil)
)

// whiteoutNode is a tar whiteout ".wh.NAME", served as NAME: a character
// device 0/0 owned by 0:0, which overlayfs treats as "deleted here". It
// takes the inode number of the ".wh.NAME" entry and has no xattrs.
type whiteoutNode struct {
	fusefs.Inode
	roNode
	entryNode
}

var (
	_ fusefs.NodeGetattrer   = (*whiteoutNode)(nil)
	_ fusefs.NodeGetxattrer  = (*whiteoutNode)(nil)
	_ fusefs.NodeListxattrer = (*whiteoutNode)(nil)
	_ diffNode               = (*whiteoutNode)(nil)
)

func (n *whiteoutNode) stable() fusefs.StableAttr {
	return fusefs.StableAttr{Mode: syscall.S_IFCHR, Ino: diffIno(n.t.l.ID(), n.e.ID)}
}

func (n *whiteoutNode) fillAttr(out *fuse.Attr) {
	*out = fuse.Attr{Ino: diffIno(n.t.l.ID(), n.e.ID), Mode: syscall.S_IFCHR, Nlink: 1, Blksize: 4096}
	setTimes(out, n.e.ModTime)
}

func (n *whiteoutNode) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fillAttr(&out.Attr)
	out.SetTimeout(n.t.ttl)
	return 0
}

func (n *whiteoutNode) Getxattr(context.Context, string, []byte) (uint32, syscall.Errno) {
	return 0, syscall.ENODATA
}

func (n *whiteoutNode) Listxattr(context.Context, []byte) (uint32, syscall.Errno) { return 0, 0 }
