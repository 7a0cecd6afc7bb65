// SPDX-License-Identifier: Apache-2.0

package cachedir

import (
	"fmt"
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
