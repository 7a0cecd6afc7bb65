// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"fmt"
	"io/fs"
	"os"
	"sort"

	"golang.org/x/sys/unix"
)

// fsTenth returns 10 % of the size of the filesystem holding dir.
func fsTenth(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Blocks) * st.Bsize / 10, nil
}

// fsAvail returns the bytes an unprivileged user may still write on the
// filesystem holding dir.
func fsAvail(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * st.Bsize, nil
}

func sortByMtime(f []found) {
	sort.Slice(f, func(i, j int) bool { return f[i].mtime < f[j].mtime })
}

// openFile opens the file at p for reading with a plain open(2): a
// regular file gains nothing from the runtime poller, and os.Open would
// try to register it.
func openFile(p string) (*os.File, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}
