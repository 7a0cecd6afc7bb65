// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"context"
	"syscall"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// roNode answers, for every node kind that embeds it, the operations that
// would change the tree: all of them fail with EROFS. go-fuse's defaults
// would answer ENOTSUP or ENOATTR instead, which tools misread. The mount
// itself is not MS_RDONLY, because the kernel would then refuse the
// CREATE("use") and RMDIR that carry the reference counts (layerNode.Create
// and refNode.Rmdir shadow the methods here). It also answers STATFS.
type roNode struct{}

var (
	_ fusefs.NodeSetattrer     = roNode{}
	_ fusefs.NodeSetxattrer    = roNode{}
	_ fusefs.NodeRemovexattrer = roNode{}
	_ fusefs.NodeMkdirer       = roNode{}
	_ fusefs.NodeMknoder       = roNode{}
	_ fusefs.NodeSymlinker     = roNode{}
	_ fusefs.NodeLinker        = roNode{}
	_ fusefs.NodeUnlinker      = roNode{}
	_ fusefs.NodeRmdirer       = roNode{}
	_ fusefs.NodeRenamer       = roNode{}
	_ fusefs.NodeCreater       = roNode{}
	_ fusefs.NodeWriter        = roNode{}
	_ fusefs.NodeAllocater     = roNode{}
	_ fusefs.NodeStatfser      = roNode{}
)

func (roNode) Setattr(context.Context, fusefs.FileHandle, *fuse.SetAttrIn, *fuse.AttrOut) syscall.Errno {
	return syscall.EROFS
}

func (roNode) Setxattr(context.Context, string, []byte, uint32) syscall.Errno { return syscall.EROFS }

func (roNode) Removexattr(context.Context, string) syscall.Errno { return syscall.EROFS }

func (roNode) Mkdir(context.Context, string, uint32, *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (roNode) Mknod(context.Context, string, uint32, uint32, *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (roNode) Symlink(context.Context, string, string, *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (roNode) Link(context.Context, fusefs.InodeEmbedder, string, *fuse.EntryOut) (*fusefs.Inode, syscall.Errno) {
	return nil, syscall.EROFS
}

func (roNode) Unlink(context.Context, string) syscall.Errno { return syscall.EROFS }

func (roNode) Rmdir(context.Context, string) syscall.Errno { return syscall.EROFS }

func (roNode) Rename(context.Context, string, fusefs.InodeEmbedder, string, uint32) syscall.Errno {
	return syscall.EROFS
}

func (roNode) Create(context.Context, string, uint32, uint32, *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	return nil, nil, 0, syscall.EROFS
}

func (roNode) Write(context.Context, fusefs.FileHandle, []byte, int64) (uint32, syscall.Errno) {
	return 0, syscall.EROFS
}

func (roNode) Allocate(context.Context, fusefs.FileHandle, uint64, uint64, uint32) syscall.Errno {
	return syscall.EROFS
}

// Statfs reports an empty, read-only-looking file system with the usual
// name limit; overlayfs and df ask for it.
func (roNode) Statfs(_ context.Context, out *fuse.StatfsOut) syscall.Errno {
	*out = fuse.StatfsOut{Bsize: 4096, Frsize: 4096, NameLen: 255}
	return 0
}

// openReadOnly is the Open check of every regular file: only read access.
func openReadOnly(flags uint32) syscall.Errno {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return syscall.EROFS
	}
	return 0
}
