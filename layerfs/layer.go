// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"context"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	digest "github.com/opencontainers/go-digest"

	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/store"
)

// layerNode is <mnt>/<base64(ref)>/<digest>/, holding diff, info and
// blob. Looking up any of them resolves the layer through the Source; the
// node itself keeps no layer, because the store may free a layer and later
// resolve it again as a new *store.Layer.
type layerNode struct {
	fusefs.Inode
	roNode
	fs  *fsys
	ref refspec.Reference
	d   digest.Digest
}

var (
	_ fusefs.NodeLookuper  = (*layerNode)(nil)
	_ fusefs.NodeCreater   = (*layerNode)(nil)
	_ fusefs.NodeReaddirer = (*layerNode)(nil)
	_ fusefs.NodeGetattrer = (*layerNode)(nil)
	_ fusefs.NodeAccesser  = (*layerNode)(nil)
	_ attrNode             = (*layerNode)(nil)
)

// layerBound is implemented by nodes built from one *store.Layer: a child
// whose layer is not the one the Source returns now is rebuilt.
type layerBound interface {
	attrNode
	layerID() uint32
}

// Lookup dispatches the three names of the contract. Everything else,
// including `use` (which must stay negative so that the kernel sends
// CREATE) and the diff1, diff2, ... that storage probes, is ENOENT.
func (n *layerNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	switch name {
	case diffDir, infoFile, blobFile:
	default:
		return nil, noEntry(out)
	}
	l, err := n.resolve(ctx)
	if err != nil {
		return nil, n.failResolve(ctx, name, out, err)
	}
	switch name {
	case diffDir:
		return n.lookupDiff(ctx, l, out), 0
	case infoFile:
		return n.lookupInfo(ctx, l, out)
	}
	return n.lookupBlob(ctx, l, out), 0
}

// resolve asks the Source for the layer, bounded by Options.ResolveTimeout.
func (n *layerNode) resolve(ctx context.Context) (*store.Layer, error) {
	ctx, cancel := context.WithTimeout(ctx, n.fs.resolveTimeout)
	defer cancel()
	return n.fs.src.Layer(ctx, n.ref, n.d)
}

// failResolve maps the error of a lookup that cannot be served and logs
// it at Debug: the Source says why at Warn, once per burst of lookups
// (store.Manager.Layer), where every lookup here would repeat it.
func (n *layerNode) failResolve(ctx context.Context, name string, out *fuse.EntryOut, err error) syscall.Errno {
	errno := failLookup(ctx, out, err)
	n.fs.log.DebugContext(ctx, "layer cannot be served", "ref", n.ref.String(), "digest", n.d.String(), "name", name, "errno", errno, "err", err)
	return errno
}

// lookupDiff returns the root of l's diff tree. Its inode number carries
// l.ID(), so go-fuse reuses the tree while the layer lives and a layer
// resolved anew gets a new tree. The entry itself stays short-lived, since
// which layer it names can change; the attributes cannot.
func (n *layerNode) lookupDiff(ctx context.Context, l *store.Layer, out *fuse.EntryOut) *fusefs.Inode {
	t := &diffTree{l: l, ix: l.Index(), ttl: n.fs.diffTTL, reads: n.fs.reads, rec: n.fs.rec,
		passthrough: n.fs.passthrough, noBackingFd: n.fs.noBackingFd}
	root := newDiffNode(t, dirent{e: t.ix.Root()})
	root.fillAttr(&out.Attr)
	out.SetEntryTimeout(n.fs.alsTTL)
	out.SetAttrTimeout(n.fs.diffTTL)
	return n.NewInode(ctx, root, root.stable())
}

// lookupInfo returns the info file of l as seen under this directory's
// digest (Gen A or Gen B JSON).
func (n *layerNode) lookupInfo(ctx context.Context, l *store.Layer, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	data, err := l.Info(n.d)
	if err != nil {
		return nil, n.failResolve(ctx, infoFile, out, err)
	}
	mk := func() attrNode { return &infoNode{id: l.ID(), data: data} }
	return n.fs.child(ctx, &n.Inode, infoFile, sameLayer(l), mk, syscall.S_IFREG, out), 0
}

// lookupBlob returns the blob file of l.
func (n *layerNode) lookupBlob(ctx context.Context, l *store.Layer, out *fuse.EntryOut) *fusefs.Inode {
	mk := func() attrNode { return &blobNode{l: l, reads: n.fs.reads} }
	return n.fs.child(ctx, &n.Inode, blobFile, sameLayer(l), mk, syscall.S_IFREG, out)
}

// sameLayer keeps an existing child only if it was built from l.
func sameLayer(l *store.Layer) func(attrNode) bool {
	return func(a attrNode) bool {
		b, ok := a.(layerBound)
		return ok && b.layerID() == l.ID()
	}
}

// Create is the use notification (drivers/overlay
// notifyUseAdditionalLayer creates <layer>/use). It takes one reference
// and answers ENOENT on purpose: the file must never exist, and a
// successful create would make storage think GC is unsupported. Other
// names are EROFS.
func (n *layerNode) Create(ctx context.Context, name string, _, _ uint32, _ *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	if name != useFile {
		return nil, nil, 0, syscall.EROFS
	}
	err := n.fs.src.Use(n.ref, n.d)
	if err == nil { // the store logs the new count
		return nil, nil, 0, syscall.ENOENT
	}
	// Debug: a use fails only while the store closes, which the
	// daemon logs.
	errno := errnoFor(ctx, alsLookup, err)
	n.fs.log.DebugContext(ctx, "use failed", "ref", n.ref.String(), "digest", n.d.String(), "errno", errno, "err", err)
	return nil, nil, 0, errno
}

// Readdir lists nothing: listing diff, info and blob with READDIRPLUS
// would resolve the layer from an innocent `ls`.
func (n *layerNode) Readdir(context.Context) (fusefs.DirStream, syscall.Errno) {
	return fusefs.NewListDirStream(nil), 0
}

func (n *layerNode) fillAttr(out *fuse.Attr) { alsDirAttr(out) }

func (n *layerNode) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fillAttr(&out.Attr)
	return 0
}

func (n *layerNode) Access(context.Context, uint32) syscall.Errno { return alsAccess() }
