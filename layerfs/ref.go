// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"context"
	"errors"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/store"
)

// refNode is <mnt>/<base64(ref)>/. Its names are layer digests: blob
// digests for Podman 4 (Gen A), TOC digests for Podman 5 (Gen B). Removing
// one of them is how storage releases a layer.
type refNode struct {
	fusefs.Inode
	roNode
	fs  *fsys
	ref refspec.Reference
}

var (
	_ fusefs.NodeLookuper  = (*refNode)(nil)
	_ fusefs.NodeRmdirer   = (*refNode)(nil)
	_ fusefs.NodeReaddirer = (*refNode)(nil)
	_ fusefs.NodeGetattrer = (*refNode)(nil)
	_ fusefs.NodeAccesser  = (*refNode)(nil)
	_ attrNode             = (*refNode)(nil)
)

// Lookup parses name as a digest and returns its layer directory without
// asking the store: storage stats the layer directory's children, and the
// first of those lookups is the one that resolves.
func (n *refNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	d, err := refspec.ParseDigest(name)
	if err != nil {
		n.fs.log.Debug("lookup: not a digest", "ref", n.ref.String(), "name", name, "err", err)
		return nil, failLookup(ctx, out, err)
	}
	mk := func() attrNode { return &layerNode{fs: n.fs, ref: n.ref, d: d} }
	return n.fs.child(ctx, &n.Inode, name, nil, mk, syscall.S_IFDIR, out), 0
}

// Rmdir is the release notification (drivers/overlay
// notifyReleaseAdditionalLayer). It drops one reference and answers ENOENT
// on purpose, as storage expects, whether or not the layer was known: the
// directory never goes away. Any other failure is reported as its errno,
// which storage logs as a warning.
func (n *refNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	d, err := refspec.ParseDigest(name)
	if err != nil {
		return syscall.ENOENT
	}
	err = n.fs.src.Release(n.ref, d)
	if err == nil || errors.Is(err, store.ErrNotFound) { // the store logs it
		return syscall.ENOENT
	}
	// Debug: a release fails only while the store closes, which the
	// daemon logs.
	errno := errnoFor(ctx, alsLookup, err)
	n.fs.log.DebugContext(ctx, "release failed", "ref", n.ref.String(), "digest", d.String(), "errno", errno, "err", err)
	return errno
}

// Readdir lists nothing: layers exist only when looked up, and listing
// them with READDIRPLUS would make the kernel resolve every one.
func (n *refNode) Readdir(context.Context) (fusefs.DirStream, syscall.Errno) {
	return fusefs.NewListDirStream(nil), 0
}

func (n *refNode) fillAttr(out *fuse.Attr) { alsDirAttr(out) }

func (n *refNode) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fillAttr(&out.Attr)
	return 0
}

func (n *refNode) Access(context.Context, uint32) syscall.Errno { return alsAccess() }
