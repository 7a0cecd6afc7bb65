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
	interrupted, cancel := context.WithCancel(context.Background())
	cancel()
	live := context.Background()
	closing := fmt.Errorf("layer sha256:x is closing: %w", context.Canceled)
	unauthorized := fmt.Errorf("fetch: %w", &registryauth.StatusError{Op: "GET", Status: 401})
	tests := []struct {
		name   string
		ctx    context.Context
		in     error
		lookup syscall.Errno // as an alsLookup
		read   syscall.Errno // as a fileRead
	}{
		{"nil", live, nil, 0, 0},
		{"nil after interrupt", interrupted, nil, 0, 0},
		// A cancellation of the store's own (a layer closed after its
		// release, a resolve deadline) is an I/O failure, not EINTR.
		{"store canceled", live, closing, syscall.EIO, syscall.EIO},
		{"deadline", live, fmt.Errorf("resolve: %w", context.DeadlineExceeded), syscall.EIO, syscall.EIO},
		{"interrupted request", interrupted, closing, syscall.EINTR, syscall.EINTR},
		{"interrupted, any error", interrupted, store.ErrNotFound, syscall.EINTR, syscall.EINTR},
		{"invalid reference", live, fmt.Errorf("decode: %w", refspec.ErrInvalid), syscall.ENOENT, syscall.EIO},
		{"not found", live, fmt.Errorf("layer x: %w", store.ErrNotFound), syscall.ENOENT, syscall.EIO},
		{"not lazy", live, fmt.Errorf("open layer: %w", store.ErrNotLazy), syscall.ENOENT, syscall.EIO},
		// storage pulls with its own credentials and reports the 401 itself.
		{"unauthorized", live, fmt.Errorf("fetch manifest: %w", registryauth.ErrUnauthorized), syscall.ENOENT, syscall.EIO},
		{"registry 401", live, unauthorized, syscall.ENOENT, syscall.EIO},
		{"registry 403", live, &registryauth.StatusError{Op: "GET", Status: 403}, syscall.ENOENT, syscall.EIO},
		{"registry 500", live, fmt.Errorf("fetch: %w", &registryauth.StatusError{Op: "GET", Status: 500}), syscall.EIO, syscall.EIO},
		{"verify", live, fmt.Errorf("chunk: %w", store.ErrVerify), syscall.EIO, syscall.EIO},
		// A cache file's ENOENT is an I/O failure of ours, not a missing name.
		{"path error", live, &fs.PathError{Op: "open", Path: "/cache/x", Err: syscall.ENOENT}, syscall.EIO, syscall.EIO},
		{"not exist", live, os.ErrNotExist, syscall.EIO, syscall.EIO},
		{"raw EACCES", live, syscall.EACCES, syscall.EIO, syscall.EIO},
		{"other", live, errors.New("boom"), syscall.EIO, syscall.EIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errnoFor(tt.ctx, alsLookup, tt.in); got != tt.lookup {
				t.Errorf("errnoFor(alsLookup, %v) = %v, want %v", tt.in, got, tt.lookup)
			}
			if got := errnoFor(tt.ctx, fileRead, tt.in); got != tt.read {
				t.Errorf("errnoFor(fileRead, %v) = %v, want %v", tt.in, got, tt.read)
			}
		})
	}
}
