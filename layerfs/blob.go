// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"context"
	"errors"
	"io"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/stargz-store/stargz-store/store"
)

// blobNode is <layer>/blob: the layer's compressed blob byte for byte,
// checked against its digest. Storage reads it only to export the layer
// (push, save, Diff), so reads go straight to store.Layer.ReadBlobAt, whose
// first read downloads the whole blob into the cache and checks it.
type blobNode struct {
	fusefs.Inode
	roNode
	l     *store.Layer
	reads *readFailures
}

var (
	_ fusefs.NodeOpener    = (*blobNode)(nil)
	_ fusefs.NodeReader    = (*blobNode)(nil)
	_ fusefs.NodeGetattrer = (*blobNode)(nil)
	_ fusefs.NodeAccesser  = (*blobNode)(nil)
	_ layerBound           = (*blobNode)(nil)
)

func (n *blobNode) layerID() uint32 { return n.l.ID() }

func (n *blobNode) fillAttr(out *fuse.Attr) {
	out.Mode = syscall.S_IFREG | modeBlob
	out.Size = uint64(n.l.Desc().Size)
	out.Blocks = blocks(out.Size)
	out.Nlink = 1
}

func (n *blobNode) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fillAttr(&out.Attr)
	return 0
}

// Open keeps the page cache: a blob is addressed by digest.
func (n *blobNode) Open(_ context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if errno := openReadOnly(flags); errno != 0 {
		return nil, 0, errno
	}
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (n *blobNode) Read(ctx context.Context, _ fusefs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	k, err := n.l.ReadBlobAt(ctx, dest, off)
	if err != nil && !errors.Is(err, io.EOF) {
		errno := errnoFor(ctx, fileRead, err)
		n.reads.failed(ctx, n.l, "", off, errno, err)
		return nil, errno
	}
	return fuse.ReadResultData(dest[:k]), 0
}

func (n *blobNode) Access(context.Context, uint32) syscall.Errno { return alsAccess() }
