// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"context"
	"errors"
	"syscall"

	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
	"github.com/stargz-store/stargz-store/store"
)

// reqKind says what a failed request was doing; the same error can call
// for a different errno in each.
type reqKind uint8

const (
	// alsLookup resolves a name of the ALS levels (a reference, a layer,
	// its diff, info or blob) or notifies a use or release: storage reads
	// ENOENT as "not here" and pulls the layer itself.
	alsLookup reqKind = iota
	// fileRead reads a file whose lookup succeeded: only EIO tells the
	// application that the bytes cannot be had.
	fileRead
)

// errnoFor is the one mapping from errors to errnos at the FUSE boundary
// (house style §4.7). ctx is the request's own context: EINTR is only for
// a request the kernel interrupted, never for a cancellation that comes
// from the store (a layer closed after its release, a resolve or fetch
// deadline). It inspects errors only with errors.Is, never with
// fusefs.ToErrno: a wrapped *os.PathError from a cache file must become
// EIO, not the ENOENT it may carry.
//
//	error                                          alsLookup  fileRead
//	any, once the request was interrupted          EINTR      EINTR
//	refspec.ErrInvalid (a name that cannot exist)  ENOENT     EIO
//	store.ErrNotFound, store.ErrNotLazy            ENOENT     EIO
//	registryauth.ErrUnauthorized                   ENOENT     EIO
//	anything else (verify, timeouts, I/O, closed)  EIO        EIO
//
// The first match wins, in this order. Any errno makes storage treat the
// layer as absent during a pull; ENOENT is the one it expects, and on a
// registry that refuses our credentials storage then pulls with its own
// and reports the refusal itself. EACCES is never an answer here: it is
// reserved for callers the mount refuses (caller.go).
func errnoFor(ctx context.Context, k reqKind, err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case ctx.Err() != nil:
		return syscall.EINTR
	case k == fileRead:
		return syscall.EIO
	case errors.Is(err, refspec.ErrInvalid),
		errors.Is(err, store.ErrNotFound),
		errors.Is(err, store.ErrNotLazy),
		errors.Is(err, registryauth.ErrUnauthorized):
		return syscall.ENOENT
	}
	return syscall.EIO
}
