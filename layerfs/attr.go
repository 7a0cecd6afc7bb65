// SPDX-License-Identifier: Apache-2.0

package layerfs

import (
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// Access mask bits of access(2), as FUSE_ACCESS carries them.
const (
	unixWOK = unix.W_OK
	unixXOK = unix.X_OK
)

// blocks returns the number of 512-byte blocks st_blocks reports for
// size bytes.
func blocks(size uint64) uint64 { return (size + 511) / 512 }

// mkdev encodes a device number as st_rdev (FUSE carries the kernel's
// 32-bit new_encode_dev form, which equals the low bits of unix.Mkdev for
// majors below 4096 and minors below 2^20).
func mkdev(major, minor uint32) uint64 { return unix.Mkdev(major, minor) }

// setTimes sets atime, mtime and ctime to t; a zero or pre-epoch time is
// reported as the epoch, since FUSE carries unsigned seconds.
func setTimes(out *fuse.Attr, t time.Time) {
	if t.Before(time.Unix(0, 0)) {
		t = time.Unix(0, 0)
	}
	out.SetTimes(&t, &t, &t)
}
