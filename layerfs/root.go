// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"context"
	"log/slog"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/stargz-store/stargz-store/refspec"
)

// fsys is what the nodes outside the diff trees share. It is set up by
// Mount and never changes afterwards, except the inode counter.
type fsys struct {
	src            Source
	log            *slog.Logger
	reads          *readFailures // failed reads of diff files and blobs
	alsTTL         time.Duration // entries and attributes of root, ref and layer levels
	diffTTL        time.Duration // entries, attributes and negative entries in diff trees
	resolveTimeout time.Duration // bound on one Source.Layer call
	rec            Recorder      // Options.Recorder, or nil
	passthrough    bool          // not Options.NoPassthrough
	noBackingFd    bool          // Options.noBackingFd
	inos           inoCounter
}

// attrNode is implemented by every node kind: it fills the attributes
// the node reports, so Lookup and Getattr never switch on node types.
type attrNode interface {
	fusefs.InodeEmbedder
	fillAttr(out *fuse.Attr)
}

// noEntry answers ENOENT without letting the kernel cache the negative
// entry: a reference or layer can appear after a failed lookup, and `use`
// must stay negative. go-fuse applies Options.NegativeTimeout (meant for
// the immutable diff trees) only while the entry timeout is still 0, so a
// non-zero one here opts out; the kernel ignores it on an error reply.
func noEntry(out *fuse.EntryOut) syscall.Errno {
	out.SetEntryTimeout(time.Nanosecond)
	return syscall.ENOENT
}

// failLookup maps err for a failed lookup of the ALS levels, never
// cacheable.
func failLookup(ctx context.Context, out *fuse.EntryOut, err error) syscall.Errno {
	if errno := errnoFor(ctx, alsLookup, err); errno != syscall.ENOENT {
		return errno
	}
	return noEntry(out)
}

// child returns parent's child called name when it exists and keep
// accepts it (nil keeps any), or else a new inode for mk() with a fresh
// number from the ALS counter. It fills out.Attr from the node returned.
func (f *fsys) child(ctx context.Context, parent *fusefs.Inode, name string, keep func(attrNode) bool,
	mk func() attrNode, mode uint32, out *fuse.EntryOut) *fusefs.Inode {
	if ch := parent.GetChild(name); ch != nil {
		if a, ok := ch.Operations().(attrNode); ok && (keep == nil || keep(a)) {
			a.fillAttr(&out.Attr)
			return ch
		}
	}
	a := mk()
	a.fillAttr(&out.Attr)
	return parent.NewInode(ctx, a, fusefs.StableAttr{Mode: mode, Ino: f.inos.next()})
}

// alsDirAttr fills the attributes of the root, reference and layer
// directories.
func alsDirAttr(out *fuse.Attr) {
	out.Mode = syscall.S_IFDIR | modeALSDir
	out.Nlink = 2
}

// alsAccess answers FUSE_ACCESS outside the diff trees: always granted.
// containers/storage >= 1.54 checks existence with faccessat(F_OK), which
// the kernel forwards as ACCESS with mask 0; EACCES would hide the layer.
func alsAccess() syscall.Errno { return 0 }

// rootNode is the mount point. Its names are base64 image references
// (refspec path elements); it lists nothing, since references exist only
// when looked up.
type rootNode struct {
	fusefs.Inode
	roNode
	fs *fsys
}

var (
	_ fusefs.NodeLookuper  = (*rootNode)(nil)
	_ fusefs.NodeReaddirer = (*rootNode)(nil)
	_ fusefs.NodeGetattrer = (*rootNode)(nil)
	_ fusefs.NodeAccesser  = (*rootNode)(nil)
	_ fusefs.NodeStatfser  = (*rootNode)(nil)
	_ attrNode             = (*rootNode)(nil)
)

// Lookup decodes name as a reference. It never touches the network: the
// reference is only resolved when a layer's diff, info or blob is looked
// up. A name that is not a canonical reference element is ENOENT.
func (n *rootNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	ref, err := refspec.FromPathElem(name)
	if err != nil {
		n.fs.log.Debug("lookup: not a reference", "name", name, "err", err)
		return nil, failLookup(ctx, out, err)
	}
	mk := func() attrNode { return &refNode{fs: n.fs, ref: ref} }
	return n.fs.child(ctx, &n.Inode, name, nil, mk, syscall.S_IFDIR, out), 0
}

// Readdir lists nothing (see rootNode).
func (n *rootNode) Readdir(context.Context) (fusefs.DirStream, syscall.Errno) {
	return fusefs.NewListDirStream(nil), 0
}

func (n *rootNode) fillAttr(out *fuse.Attr) { alsDirAttr(out) }

func (n *rootNode) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fillAttr(&out.Attr)
	return 0
}

func (n *rootNode) Access(context.Context, uint32) syscall.Errno { return alsAccess() }
