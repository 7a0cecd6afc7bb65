// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"context"
	"errors"
	"syscall"

	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/store"
)

// errnoFor is the one mapping from errors to errnos at the FUSE boundary
// (house style §4.7). It inspects errors only with errors.Is, never with
// fusefs.ToErrno: a wrapped *os.PathError from a cache file must become
// EIO, not the ENOENT it may carry.
//
//	context.Canceled (kernel interrupt)            EINTR
//	refspec.ErrInvalid (a name that cannot exist)  ENOENT
//	store.ErrNotFound, store.ErrNotLazy            ENOENT (storage pulls normally)
//	anything else (verify, timeouts, I/O)          EIO
//
// TODO: registryauth.ErrUnauthorized -> EACCES once package registryauth
// lands; errno_test.go holds the skipped case.
func errnoFor(err error) syscall.Errno {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	case errors.Is(err, refspec.ErrInvalid),
		errors.Is(err, store.ErrNotFound),
		errors.Is(err, store.ErrNotLazy):
		return syscall.ENOENT
	}
	return syscall.EIO
}
