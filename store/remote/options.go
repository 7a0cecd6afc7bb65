// SPDX-License-Identifier: Apache-2.0

package remote

import (
	"log/slog"
	"time"
)

// Options configure Blobs and Repositories. The zero value makes one
// attempt per endpoint, without a progress bound or a budget, and logs
// nothing.
type Options struct {
	// FetchTimeout bounds how long one attempt may go without progress:
	// until the answer's headers, then between two 64 KiB of its body.
	// 0 means no bound.
	FetchTimeout time.Duration
	// ReadTimeout is a fetch's budget: no attempt starts after it, and a
	// Read ends at it. 0 means the context's deadline only.
	ReadTimeout time.Duration
	// Retries caps the rounds of attempts after the first. 0 means until
	// ReadTimeout (none without it); negative means none.
	Retries int
	// Backoff is the first delay between two rounds; it doubles up to
	// MaxBackoff. 0 means none.
	Backoff, MaxBackoff time.Duration
	// SingleRange turns off multi-range requests (a Blob also turns them
	// off when a registry refuses one).
	SingleRange bool
	// Logger receives the client's log lines; nil discards.
	Logger *slog.Logger
}
