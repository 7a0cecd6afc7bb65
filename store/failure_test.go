// SPDX-License-Identifier: Apache-2.0

package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stargz-store/stargz-store/registryauth"
)

func TestFailureReason(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"not lazy", fmt.Errorf("layer x: %w: no annotation", ErrNotLazy), "not-lazy"},
		{"refused TOC", fmt.Errorf("open: %w: %w", ErrNotLazy, ErrVerify), "not-lazy"},
		{"credentials", fmt.Errorf("manifest: %w", registryauth.ErrUnauthorized), "unauthorized"},
		{"TOC digest", fmt.Errorf("toc: %w", ErrVerify), "verify"},
		{"resolve timeout", fmt.Errorf("config: %w", context.DeadlineExceeded), "timeout"},
		{"HTTP status", errors.New("manifest: 500 Internal Server Error"), "registry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := failureReason(tt.err); got != tt.want {
				t.Errorf("failureReason(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}
