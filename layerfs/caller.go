// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"log/slog"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Who may call: root and the user the server runs as (a rootless store),
// and nobody else. The mount has no allow_other, so the kernel already
// refuses every other process (fuse_allow_current_process); callerGate
// refuses them again, in case the mount is ever made reachable with
// allow_other, and is tested that way.
//
// Which requests are checked follows from how overlayfs uses a lower
// directory. Lookup, open, getattr, readdir, readlink and xattrs of a
// lower layer run with the credentials of whoever mounted the overlay
// (root for rootful Podman, the user's namespace root for rootless), so
// those are checked. A page fault on a mapped file (ld.so mapping a
// library, exec) sends READ with the credentials of the faulting task: a
// container process running as uid 65534, or as 100000+ under
// --userns=auto. READ is therefore not checked, nor is anything else done
// through a handle that was opened by a permitted caller (FLUSH, LSEEK,
// RELEASE, ...): opening is the check. FORGET, RELEASE, RELEASEDIR,
// INTERRUPT and DESTROY carry no credentials (the kernel leaves uid and
// gid 0) and are not checked. With FUSE_ALLOW_IDMAP, which this server
// does not negotiate, every request but the creating ones would carry
// uid and gid 0xffffffff (FUSE_INVALID_UIDGID): a checked request that
// arrives that way has no caller to permit and is refused.
//
// The refusal is EACCES: the caller is not allowed, the name may well
// exist. Operations that would change the tree answer EROFS to anyone
// (roNode), except CREATE of `use` and RMDIR of a layer directory, which
// count references and are checked.

// noCreds is the uid and gid of a request sent without credentials.
const noCreds = ^uint32(0)

// callerAllowed reports whether a request from c may proceed on a server
// running as owner.
func callerAllowed(c *fuse.Caller, owner uint32) bool {
	return c.Uid != noCreds && (c.Uid == 0 || c.Uid == owner)
}

// callerGate wraps the node file system and refuses, with EACCES, the
// requests that give access to the tree when they come from a caller
// callerAllowed refuses. It is the one place where callers are checked:
// the node handlers never look at credentials.
type callerGate struct {
	fuse.RawFileSystem
	owner uint32 // the server's effective uid
	log   *slog.Logger
}

// refuse reports whether the request op from c must be refused, and logs
// it at Debug (a refused caller may repeat itself quickly).
func (g *callerGate) refuse(op string, c *fuse.Caller) bool {
	if callerAllowed(c, g.owner) {
		return false
	}
	g.log.Debug("caller refused", "op", op, "uid", c.Uid, "gid", c.Gid, "pid", c.Pid)
	return true
}

func (g *callerGate) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if g.refuse("LOOKUP", &h.Caller) {
		return fuse.EACCES
	}
	return g.RawFileSystem.Lookup(cancel, h, name, out)
}

func (g *callerGate) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	if g.refuse("GETATTR", &in.Caller) {
		return fuse.EACCES
	}
	return g.RawFileSystem.GetAttr(cancel, in, out)
}

func (g *callerGate) Statx(cancel <-chan struct{}, in *fuse.StatxIn, out *fuse.StatxOut) fuse.Status {
	if g.refuse("STATX", &in.Caller) {
		return fuse.EACCES
	}
	return g.RawFileSystem.Statx(cancel, in, out)
}

func (g *callerGate) Access(cancel <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	if g.refuse("ACCESS", &in.Caller) {
		return fuse.EACCES
	}
	return g.RawFileSystem.Access(cancel, in)
}

func (g *callerGate) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if g.refuse("OPEN", &in.Caller) {
		return fuse.EACCES
	}
	return g.RawFileSystem.Open(cancel, in, out)
}

func (g *callerGate) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if g.refuse("OPENDIR", &in.Caller) {
		return fuse.EACCES
	}
	return g.RawFileSystem.OpenDir(cancel, in, out)
}

func (g *callerGate) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if g.refuse("READDIR", &in.Caller) {
		return fuse.EACCES
	}
	return g.RawFileSystem.ReadDir(cancel, in, out)
}

func (g *callerGate) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	if g.refuse("READDIRPLUS", &in.Caller) {
		return fuse.EACCES
	}
	return g.RawFileSystem.ReadDirPlus(cancel, in, out)
}

func (g *callerGate) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	if g.refuse("READLINK", &h.Caller) {
		return nil, fuse.EACCES
	}
	return g.RawFileSystem.Readlink(cancel, h)
}

func (g *callerGate) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	if g.refuse("GETXATTR", &h.Caller) {
		return 0, fuse.EACCES
	}
	return g.RawFileSystem.GetXAttr(cancel, h, attr, dest)
}

func (g *callerGate) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	if g.refuse("LISTXATTR", &h.Caller) {
		return 0, fuse.EACCES
	}
	return g.RawFileSystem.ListXAttr(cancel, h, dest)
}

// Create is how storage takes a reference (`use`): others must not.
func (g *callerGate) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	if g.refuse("CREATE", &in.Caller) {
		return fuse.EACCES
	}
	return g.RawFileSystem.Create(cancel, in, name, out)
}

// Rmdir is how storage releases a layer: others must not.
func (g *callerGate) Rmdir(cancel <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	if g.refuse("RMDIR", &h.Caller) {
		return fuse.EACCES
	}
	return g.RawFileSystem.Rmdir(cancel, h, name)
}

func (g *callerGate) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	if g.refuse("STATFS", &h.Caller) {
		return fuse.EACCES
	}
	return g.RawFileSystem.StatFs(cancel, h, out)
}
