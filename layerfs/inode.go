// SPDX-License-Identifier: Apache-2.0

package layerfs

import "sync/atomic"

// Inode numbers. One FUSE superblock serves every layer, and overlayfs
// stacks several diff trees of it, so numbers must never collide across
// layers. The 64-bit space is cut in two:
//
//	upper 32 bits 0:   nodes outside diff trees (root, reference and layer
//	                   directories, info, blob), numbered by a counter:
//	                   1 is the root, the rest are handed out from 2 up.
//	upper 32 bits L:   entries of the diff tree of the layer with
//	                   store.Layer.ID() == L (never 0): the lower 32 bits
//	                   are the index.Entry ID (the diff root is entry 1).
//
// Hard links share an Entry and so an inode number, which go-fuse then
// serves as one Inode (the same st_ino, and nlink from the index). A
// whiteout takes the number of its ".wh.NAME" entry. A layer that is closed
// and resolved again gets a new ID, so its new tree gets fresh numbers and
// go-fuse never hands back a node of the closed layer.
const rootIno = 1

// diffIno returns the inode number of entry in the diff tree of layer.
func diffIno(layer, entry uint32) uint64 { return uint64(layer)<<32 | uint64(entry) }

// inoCounter hands out inode numbers for nodes outside diff trees. The
// zero value starts after rootIno. It is safe for concurrent use.
type inoCounter struct{ last atomic.Uint32 }

// next returns a fresh number in [2, 2^32). After 2^32-2 numbers it wraps
// around; by then the kernel has long forgotten the early ones.
func (c *inoCounter) next() uint64 {
	for {
		v := c.last.Add(1)
		if v > rootIno {
			return uint64(v)
		}
	}
}
