// SPDX-License-Identifier: Apache-2.0

// Package logthrottle picks the level of a log line that repeats: Warn the
// first time for a key, Debug for the repeats that follow within a quiet
// period. A failure that every request of a burst runs into (the lookups
// storage makes for one pull, the reads of a container whose layer cannot
// be read) then says so once at Warn, with all its detail at Debug.
package logthrottle

import (
	"log/slog"
	"sync"
	"time"
)

// Throttle remembers when each key was last logged at Warn. It remembers
// at most maxKeys (see New): when that many are, they are all forgotten,
// so a flood of distinct keys costs bounded memory and, at worst, a few
// more warnings. Safe for concurrent use; it takes the time from its caller,
// so that tests drive it with their own clock.
type Throttle[K comparable] struct {
	quiet time.Duration
	max   int

	// mu guards the field below.
	mu   sync.Mutex
	last map[K]time.Time
}

// New returns a throttle that warns about a key at most once per quiet
// and remembers at most maxKeys keys (at least one).
func New[K comparable](quiet time.Duration, maxKeys int) *Throttle[K] {
	return &Throttle[K]{quiet: quiet, max: max(maxKeys, 1), last: map[K]time.Time{}}
}

// Level returns slog.LevelWarn if k was not warned about in the quiet
// period before now, and records now as its last warning; otherwise
// slog.LevelDebug. Repeats do not extend the quiet period: a failure that
// goes on is warned about again every quiet.
func (t *Throttle[K]) Level(k K, now time.Time) slog.Level {
	t.mu.Lock()
	defer t.mu.Unlock()
	if last, ok := t.last[k]; ok && now.Sub(last) < t.quiet {
		return slog.LevelDebug
	}
	if len(t.last) >= t.max {
		clear(t.last)
	}
	t.last[k] = now
	return slog.LevelWarn
}
