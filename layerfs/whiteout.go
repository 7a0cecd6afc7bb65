// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"slices"
	"strings"
	"syscall"

	"github.com/stargz-store/stargz-store/store/index"
)

// How a diff tree presents the tar conventions of a layer to overlayfs.
// The index keeps whiteouts and landmarks as ordinary entries; everything
// here is pure, so Lookup and Readdir share it and it is tested without a
// mount.
const (
	// whiteoutPrefix marks a tar whiteout: ".wh.NAME" deletes NAME of the
	// layers below. It is served as NAME, a character device 0/0, which
	// is overlayfs's own whiteout.
	whiteoutPrefix = ".wh."
	// opaqueWhiteout marks its directory opaque: nothing of the layers
	// below shows through. It is served as the opaque xattrs instead.
	opaqueWhiteout = ".wh..wh..opq"
	// prefetchLandmark and noPrefetchLandmark are eStargz markers at the
	// layer root; they are not part of the image's file system.
	prefetchLandmark   = ".prefetch.landmark"
	noPrefetchLandmark = ".no.prefetch.landmark"
)

// opaqueXattrs are set to "y" on an opaque directory: trusted.* for
// overlayfs mounted by root, user.* for rootless overlayfs with the
// userxattr option. Serving both works for either mounter.
var opaqueXattrs = [...]string{"trusted.overlay.opaque", "user.overlay.opaque"}

// dirent is one name of a presented directory: a real entry, or the
// whiteout made of a ".wh.NAME" entry.
type dirent struct {
	name     string
	e        *index.Entry
	whiteout bool
}

// hidden reports whether name in dir is never shown: every ".wh." name
// (whiteouts are shown under their target's name, and the opaque marker
// and hard-link helpers such as ".wh..wh.plnk" not at all), the landmarks
// at the layer root, and the empty name a bare ".wh." entry would give.
func hidden(ix *index.Index, dir *index.Entry, name string) bool {
	if name == "" || strings.HasPrefix(name, whiteoutPrefix) {
		return true
	}
	return dir == ix.Root() && (name == prefetchLandmark || name == noPrefetchLandmark)
}

// lookupChild resolves name in dir as the diff tree shows it. A real entry
// wins over a whiteout of the same name.
func lookupChild(ix *index.Index, dir *index.Entry, name string) (dirent, bool) {
	if hidden(ix, dir, name) {
		return dirent{}, false
	}
	if e, ok := ix.Child(dir, name); ok {
		return dirent{name: name, e: e}, true
	}
	if e, ok := ix.Child(dir, whiteoutPrefix+name); ok {
		return dirent{name: name, e: e, whiteout: true}, true
	}
	return dirent{}, false
}

// listChildren returns what lookupChild would find in dir, sorted by name.
func listChildren(ix *index.Index, dir *index.Entry) []dirent {
	kids := ix.Children(dir)
	out := make([]dirent, 0, len(kids))
	for _, k := range kids {
		name, isWhiteout := strings.CutPrefix(k.Name, whiteoutPrefix)
		if d, ok := lookupChild(ix, dir, name); ok && d.e == k.Entry && d.whiteout == isWhiteout {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b dirent) int { return strings.Compare(a.name, b.name) })
	return out
}

// isOpaque reports whether dir holds the opaque marker.
func isOpaque(ix *index.Index, dir *index.Entry) bool {
	if dir.Type != index.TypeDir {
		return false
	}
	_, ok := ix.Child(dir, opaqueWhiteout)
	return ok
}

// xattr returns the value of attribute name of e as served: the layer's
// own xattrs, plus the opaque markers of an opaque directory.
func xattr(ix *index.Index, e *index.Entry, name string) ([]byte, bool) {
	if v, ok := e.Xattrs[name]; ok {
		return v, true
	}
	if slices.Contains(opaqueXattrs[:], name) && isOpaque(ix, e) {
		return []byte("y"), true
	}
	return nil, false
}

// xattrNames returns the attribute names of e as served, sorted.
func xattrNames(ix *index.Index, e *index.Entry) []string {
	names := make([]string, 0, len(e.Xattrs)+len(opaqueXattrs))
	for k := range e.Xattrs {
		names = append(names, k)
	}
	if isOpaque(ix, e) {
		for _, k := range opaqueXattrs {
			if _, dup := e.Xattrs[k]; !dup {
				names = append(names, k)
			}
		}
	}
	slices.Sort(names)
	return names
}

// copyXattr answers a getxattr or listxattr request for value v: the size
// alone for a size query (empty dest), ERANGE with the size when dest is
// too small.
func copyXattr(dest, v []byte) (uint32, syscall.Errno) {
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// xattrList encodes names as listxattr does: each followed by NUL.
func xattrList(names []string) []byte {
	var b []byte
	for _, n := range names {
		b = append(append(b, n...), 0)
	}
	return b
}
