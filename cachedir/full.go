// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"context"
	"errors"
	"log/slog"
	"syscall"
	"time"
)

// A full disk (ENOSPC, or EDQUOT: a quota) is not the cache's to fix, but
// the cache yields: when a write (create, write, sync, rename) finds the
// disk full, the limit drops to what the cache holds minus a margin and
// the least recently used entries are evicted, so that the writes after
// it fit. Nothing else changes for readers: what a write loses is still
// in memory (the memory LRU, the caller's verified bytes) and otherwise
// comes from the registry again. The first such write is logged at Warn;
// the writes that fail while the condition lasts are logged at Debug.
//
// Every fullRetry, the next write checks the free space (statfs) and
// raises the limit as far as it allows, up to Options.MaxSize. Once it is
// back there the condition has cleared (logged at Info), and the next
// full disk is logged at Warn again. A quota is not visible to statfs:
// then the limit goes back up after fullRetry and drops at the next
// EDQUOT, one Warn line per fullRetry at most.

// fullRetry is how long the lowered limit holds before the free space is
// checked again.
const fullRetry = time.Minute

// fullMargin is how far below its holdings the cache drops when the disk
// is full: 1/32 of the configured size, at least 1 MiB and at most
// 256 MiB (320 MiB of a 10 GiB cache would be 256 MiB).
func fullMargin(maxSize int64) int64 { return min(max(maxSize/32, 1<<20), 256<<20) }

// isDiskFull reports whether err says the disk (or the user's quota) is
// full.
func isDiskFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// fault returns the error the test hook injects into op, if any.
func (d *Dir) fault(op string) error {
	if d.hook == nil {
		return nil
	}
	return d.hook(op)
}

// failed notes the error of a write's disk operation and returns it: a
// full disk lowers the limit and evicts.
func (d *Dir) failed(err error) error {
	if !isDiskFull(err) {
		return err
	}
	d.mu.Lock()
	first := d.fullAt.IsZero()
	d.fullAt = time.Now()
	d.limit = max(0, min(d.limit, d.usage)-fullMargin(d.max))
	d.evictLocked(0)
	used, limit := d.usage, d.limit
	d.mu.Unlock()
	level := slog.LevelDebug
	if first {
		level = slog.LevelWarn
	}
	d.log.Log(context.Background(), level, "cache disk full: limit lowered and entries evicted; reads go on from memory and the registry",
		"path", d.root, "used", used, "limit", limit, "err", err)
	return err
}

// retryFull raises the lowered limit, as far as the free space allows,
// once fullRetry has passed since a write last found the disk full.
func (d *Dir) retryFull() {
	d.mu.Lock()
	due := !d.fullAt.IsZero() && time.Since(d.fullAt) >= fullRetry
	if due {
		d.fullAt = time.Now() // one check per period
	}
	d.mu.Unlock()
	if !due {
		return
	}
	avail, err := fsAvail(d.root)
	if err != nil {
		d.log.Debug("cache free space", "path", d.root, "err", err)
		return
	}
	d.mu.Lock()
	d.limit = min(d.max, max(0, d.usage+avail-fullMargin(d.max)))
	cleared := d.limit == d.max
	if cleared {
		d.fullAt = time.Time{}
	}
	d.evictLocked(0)
	used, limit := d.usage, d.limit
	d.mu.Unlock()
	if cleared {
		d.log.Info("cache disk has room again", "path", d.root, "used", used, "limit", limit, "free", avail)
		return
	}
	d.log.Debug("cache disk still short of room", "path", d.root, "used", used, "limit", limit, "free", avail)
}
