// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"testing"

	"github.com/stargz-store/stargz-store/refspec"
	"github.com/stargz-store/stargz-store/registryauth"
	"github.com/stargz-store/stargz-store/store"
)

func TestErrnoFor(t *testing.T) {
	tests := []struct {
		name string
		in   error
		want syscall.Errno
	}{
		{"nil", nil, 0},
		{"canceled", context.Canceled, syscall.EINTR},
		{"wrapped canceled", fmt.Errorf("fetch chunk: %w", context.Canceled), syscall.EINTR},
		{"deadline", context.DeadlineExceeded, syscall.EIO},
		{"invalid reference", fmt.Errorf("decode: %w", refspec.ErrInvalid), syscall.ENOENT},
		{"not found", fmt.Errorf("layer x: %w", store.ErrNotFound), syscall.ENOENT},
		{"not lazy", fmt.Errorf("open layer: %w", store.ErrNotLazy), syscall.ENOENT},
		{"verify", fmt.Errorf("chunk: %w", store.ErrVerify), syscall.EIO},
		// A cache file's ENOENT is an I/O failure of ours, not a missing name.
		{"path error", &fs.PathError{Op: "open", Path: "/cache/x", Err: syscall.ENOENT}, syscall.EIO},
		{"not exist", os.ErrNotExist, syscall.EIO},
		{"raw errno", syscall.EPERM, syscall.EIO},
		{"other", errors.New("boom"), syscall.EIO},
		{"canceled wins", fmt.Errorf("%w: %w", store.ErrNotFound, context.Canceled), syscall.EINTR},
		{"unauthorized", fmt.Errorf("fetch manifest: %w", registryauth.ErrUnauthorized), syscall.EACCES},
		{"registry 401", fmt.Errorf("fetch: %w", &registryauth.StatusError{Op: "GET", Status: 401}), syscall.EACCES},
		{"registry 500", fmt.Errorf("fetch: %w", &registryauth.StatusError{Op: "GET", Status: 500}), syscall.EIO},
		{"unauthorized wins over not found", fmt.Errorf("%w: %w", store.ErrNotFound, registryauth.ErrUnauthorized), syscall.EACCES},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errnoFor(tt.in); got != tt.want {
				t.Errorf("errnoFor(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
