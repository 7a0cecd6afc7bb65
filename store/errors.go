// SPDX-License-Identifier: Apache-2.0

package store

import "errors"

// Error classes of the store. The FUSE layer maps them to errnos
// (layerfs/errno.go); callers test them with errors.Is.
var (
	// ErrNotFound: the image has no layer by that digest.
	ErrNotFound = errors.New("layer not found")
	// ErrNotLazy: the layer exists but cannot be served lazily (not
	// eStargz, no TOC digest, a TOC we refuse). Storage pulls it normally.
	ErrNotLazy = errors.New("layer cannot be served lazily")
	// ErrVerify: fetched bytes do not match their digest.
	ErrVerify = errors.New("verification failed")
)
