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

// errnoFor is the one mapping from errors to errnos at the FUSE boundary
// (house style §4.7). It inspects errors only with errors.Is, never with
// fusefs.ToErrno: a wrapped *os.PathError from a cache file must become
// EIO, not the ENOENT it may carry.
//
//	context.Canceled (kernel interrupt)            EINTR
//	registryauth.ErrUnauthorized                   EACCES
//	refspec.ErrInvalid (a name that cannot exist)  ENOENT
//	store.ErrNotFound, store.ErrNotLazy            ENOENT (storage pulls normally)
//	anything else (verify, timeouts, I/O)          EIO
//
// The first match wins, in this order. Any errno makes storage treat the
// layer as absent during a pull; ENOENT is the one it expects.
func errnoFor(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, registryauth.ErrUnauthorized):
		return syscall.EACCES
	case errors.Is(err, refspec.ErrInvalid),
		errors.Is(err, store.ErrNotFound),
		errors.Is(err, store.ErrNotLazy):
		return syscall.ENOENT
	}
	return syscall.EIO
}
