// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// DefaultReadAheadKB is the kernel read-ahead of the mount: as large as
// one FUSE read (MaxWrite, 1 MiB). The kernel's default, 128 KiB, splits a
// sequential read into eight times as many requests: a warm re-read of a
// cached 100 MiB file (page cache dropped) ran at 1.0-1.2 GB/s with it and
// 1.4-1.6 GB/s with 1 MiB, on a disk that reads 3.0-3.2 GB/s. 4 MiB gave
// 1.8-2.2 GB/s, but a larger window also reads more around each page fault
// of a lazily fetched file, so the window stays at one request.
const DefaultReadAheadKB = 1024

// setReadAhead sets the read-ahead of the file system mounted on dir, through
// its backing device's entry in /sys/class/bdi (root only).
func setReadAhead(dir string, kb int) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return fmt.Errorf("read-ahead of %s: %w", dir, err)
	}
	return os.WriteFile(bdiReadAheadPath(st.Dev), []byte(strconv.Itoa(kb)), 0o644)
}

func bdiReadAheadPath(dev uint64) string {
	return fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(dev), unix.Minor(dev))
}
