// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"log/slog"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"
)

func TestCallerAllowed(t *testing.T) {
	tests := []struct {
		name  string
		uid   uint32
		owner uint32
		want  bool
	}{
		{"root, rootful store", 0, 0, true},
		{"other user, rootful store", 65534, 0, false},
		{"container uid under --userns=auto", 100000, 0, false},
		{"the store's user, rootless store", 1000, 1000, true},
		{"root, rootless store", 0, 1000, true},
		{"other user, rootless store", 1001, 1000, false},
		{"no credentials", noCreds, 0, false},
		{"no credentials, rootless store", noCreds, 1000, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &fuse.Caller{Owner: fuse.Owner{Uid: tt.uid, Gid: tt.uid}}
			if got := callerAllowed(c, tt.owner); got != tt.want {
				t.Errorf("callerAllowed(uid %d, owner %d) = %v, want %v", tt.uid, tt.owner, got, tt.want)
			}
		})
	}
}

// gateOp calls one method of g as caller c and returns its status.
type gateOp func(g *callerGate, c fuse.Caller) fuse.Status

// TestCallerGate checks which requests the gate refuses to another user:
// every one that gives access, and none that only uses a handle (READ
// must pass: page faults of container processes come as their own uid).
func TestCallerGate(t *testing.T) {
	h := func(c fuse.Caller) *fuse.InHeader { return &fuse.InHeader{NodeId: 1, Caller: c} }
	checked := map[string]gateOp{
		"LOOKUP": func(g *callerGate, c fuse.Caller) fuse.Status { return g.Lookup(nil, h(c), "x", &fuse.EntryOut{}) },
		"GETATTR": func(g *callerGate, c fuse.Caller) fuse.Status {
			return g.GetAttr(nil, &fuse.GetAttrIn{InHeader: *h(c)}, &fuse.AttrOut{})
		},
		"STATX": func(g *callerGate, c fuse.Caller) fuse.Status {
			return g.Statx(nil, &fuse.StatxIn{InHeader: *h(c)}, &fuse.StatxOut{})
		},
		"ACCESS": func(g *callerGate, c fuse.Caller) fuse.Status { return g.Access(nil, &fuse.AccessIn{InHeader: *h(c)}) },
		"OPEN": func(g *callerGate, c fuse.Caller) fuse.Status {
			return g.Open(nil, &fuse.OpenIn{InHeader: *h(c)}, &fuse.OpenOut{})
		},
		"OPENDIR": func(g *callerGate, c fuse.Caller) fuse.Status {
			return g.OpenDir(nil, &fuse.OpenIn{InHeader: *h(c)}, &fuse.OpenOut{})
		},
		"READDIR": func(g *callerGate, c fuse.Caller) fuse.Status {
			return g.ReadDir(nil, &fuse.ReadIn{InHeader: *h(c)}, fuse.NewDirEntryList(make([]byte, 4096), 0))
		},
		"READDIRPLUS": func(g *callerGate, c fuse.Caller) fuse.Status {
			return g.ReadDirPlus(nil, &fuse.ReadIn{InHeader: *h(c)}, fuse.NewDirEntryList(make([]byte, 4096), 0))
		},
		"READLINK": func(g *callerGate, c fuse.Caller) fuse.Status { _, s := g.Readlink(nil, h(c)); return s },
		"GETXATTR": func(g *callerGate, c fuse.Caller) fuse.Status {
			_, s := g.GetXAttr(nil, h(c), "user.x", make([]byte, 64))
			return s
		},
		"LISTXATTR": func(g *callerGate, c fuse.Caller) fuse.Status {
			_, s := g.ListXAttr(nil, h(c), make([]byte, 64))
			return s
		},
		"CREATE": func(g *callerGate, c fuse.Caller) fuse.Status {
			return g.Create(nil, &fuse.CreateIn{InHeader: *h(c)}, useFile, &fuse.CreateOut{})
		},
		"RMDIR":  func(g *callerGate, c fuse.Caller) fuse.Status { return g.Rmdir(nil, h(c), "sha256:x") },
		"STATFS": func(g *callerGate, c fuse.Caller) fuse.Status { return g.StatFs(nil, h(c), &fuse.StatfsOut{}) },
	}
	unchecked := map[string]gateOp{
		"READ": func(g *callerGate, c fuse.Caller) fuse.Status {
			_, s := g.Read(nil, &fuse.ReadIn{InHeader: *h(c)}, make([]byte, 4096))
			return s
		},
		"FLUSH": func(g *callerGate, c fuse.Caller) fuse.Status { return g.Flush(nil, &fuse.FlushIn{InHeader: *h(c)}) },
		"LSEEK": func(g *callerGate, c fuse.Caller) fuse.Status {
			return g.Lseek(nil, &fuse.LseekIn{InHeader: *h(c)}, &fuse.LseekOut{})
		},
	}
	g := &callerGate{RawFileSystem: fuse.NewDefaultRawFileSystem(), owner: 1000, log: slog.New(slog.DiscardHandler)}
	callers := map[string]fuse.Caller{
		"root": {}, "owner": {Owner: fuse.Owner{Uid: 1000, Gid: 1000}},
		"other": {Owner: fuse.Owner{Uid: 65534, Gid: 65534}}, "no credentials": {Owner: fuse.Owner{Uid: noCreds, Gid: noCreds}},
	}
	for who, c := range callers {
		refused := who == "other" || who == "no credentials"
		for op, call := range checked {
			if got := call(g, c); (got == fuse.EACCES) != refused {
				t.Errorf("%s from %s = %v, want EACCES: %v", op, who, got, refused)
			}
		}
		for op, call := range unchecked {
			if got := call(g, c); got == fuse.EACCES {
				t.Errorf("%s from %s = EACCES: handle operations are never checked", op, who)
			}
		}
	}
}
