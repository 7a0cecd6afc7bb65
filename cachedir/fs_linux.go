// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"fmt"
	"io"
	"io/fs"
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

func sortByMtime(f []found) {
	sort.Slice(f, func(i, j int) bool { return f[i].mtime < f[j].mtime })
}

// readFile reads size bytes of the file at p with plain system calls.
func readFile(p string, size int64) ([]byte, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	defer unix.Close(fd)
	b := make([]byte, size)
	for n := 0; n < len(b); {
		k, err := unix.Pread(fd, b[n:], int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: p, Err: err}
		}
		if k == 0 {
			return nil, &fs.PathError{Op: "read", Path: p, Err: io.ErrUnexpectedEOF}
		}
		n += k
	}
	return b, nil
}
