// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"context"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// infoNode is <layer>/info: the JSON storage decodes into its layer
// record (store.Layer.Info). Its size is exact, because storage reads it
// with a plain read loop and the kernel trusts st_size for page caching.
type infoNode struct {
	fusefs.Inode
	roNode
	id   uint32 // the store.Layer it was rendered from
	data []byte
}

var (
	_ fusefs.NodeOpener    = (*infoNode)(nil)
	_ fusefs.NodeReader    = (*infoNode)(nil)
	_ fusefs.NodeGetattrer = (*infoNode)(nil)
	_ fusefs.NodeAccesser  = (*infoNode)(nil)
	_ layerBound           = (*infoNode)(nil)
)

func (n *infoNode) layerID() uint32 { return n.id }

func (n *infoNode) fillAttr(out *fuse.Attr) {
	out.Mode = syscall.S_IFREG | modeInfo
	out.Size = uint64(len(n.data))
	out.Blocks = blocks(out.Size)
	out.Nlink = 1
}

func (n *infoNode) Getattr(_ context.Context, _ fusefs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fillAttr(&out.Attr)
	return 0
}

// Open keeps the page cache: a node's data never changes; a changed layer
// gets a new node.
func (n *infoNode) Open(_ context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	if errno := openReadOnly(flags); errno != 0 {
		return nil, 0, errno
	}
	return nil, fuse.FOPEN_KEEP_CACHE, 0
}

func (n *infoNode) Read(_ context.Context, _ fusefs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= int64(len(n.data)) {
		return fuse.ReadResultData(nil), 0
	}
	return fuse.ReadResultData(n.data[off:min(off+int64(len(dest)), int64(len(n.data)))]), 0
}

func (n *infoNode) Access(context.Context, uint32) syscall.Errno { return alsAccess() }
