// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"context"
	"log/slog"
	"syscall"
	"time"

	"github.com/stargz-store/stargz-store/internal/logthrottle"
	"github.com/stargz-store/stargz-store/store"
)

// Failed reads are the one failure the FUSE tree logs above Debug. A
// failed lookup is logged by the store (store.Manager.Layer says once per
// burst why a layer is not served lazily), and use and release fail only
// while the store closes; but a read that fails is an I/O error in a
// running container, and the store logs the causes of some (verification,
// an unreachable registry, a full disk) and not others (a registry that
// answers 404 or 401 for a blob it listed, a read timeout). So the first
// failed read of a layer is a Warn, and the repeats of the next
// readWarnQuiet are Debug: a container whose layer cannot be read fails
// many reads (the kernel retries a failed readahead at once, programs
// retry), and one line per layer and minute says it.
const (
	readWarnQuiet = time.Minute
	maxReadWarned = 1024
)

// readFailures logs failed reads of diff files and blobs: Warn once per
// layer and readWarnQuiet, Debug otherwise and for interrupted reads.
// Safe for concurrent use.
type readFailures struct {
	log    *slog.Logger
	warned *logthrottle.Throttle[uint32] // by store.Layer.ID
}

func newReadFailures(log *slog.Logger) *readFailures {
	return &readFailures{log: log, warned: logthrottle.New[uint32](readWarnQuiet, maxReadWarned)}
}

// failed logs a read of l at off that failed with err, answered errno;
// path is the file's name in the layer, "" for the blob.
func (r *readFailures) failed(ctx context.Context, l *store.Layer, path string, off int64, errno syscall.Errno, err error) {
	lvl := slog.LevelDebug
	if errno != syscall.EINTR {
		lvl = r.warned.Level(l.ID(), time.Now())
	}
	d := l.Desc()
	msg, attrs := "read failed", []any{"ref", d.Ref.String(), "digest", d.Digest.String(), "path", path}
	if path == "" {
		msg, attrs = "read blob failed", attrs[:4]
	}
	r.log.Log(ctx, lvl, msg, append(attrs, "off", off, "errno", errno, "err", err)...)
}
