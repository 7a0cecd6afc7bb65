// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// FUSE passthrough (fuse.passthrough) needs Linux 6.9 or later and
// CAP_SYS_ADMIN in the initial user namespace: the kernel refuses to
// register a backing file otherwise, and go-fuse then turns passthrough
// off for the mount. The store would still build the whole-file cache
// copies that only passthrough reads, so serve turns both off, and says
// why, when passthrough cannot work.

// capSysAdmin is CAP_SYS_ADMIN's bit in /proc/self/status CapEff.
const capSysAdmin = 21

// passthroughUnavailable returns why FUSE passthrough cannot work for
// this process, or "" when it can.
func passthroughUnavailable() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Sprintf("uname: %v", err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fmt.Sprintf("read capabilities: %v", err)
	}
	uidMap, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return fmt.Sprintf("read uid_map: %v", err)
	}
	return passthroughWhy(unix.ByteSliceToString(u.Release[:]), string(status), string(uidMap))
}

// passthroughWhy decides from the kernel release, /proc/self/status and
// /proc/self/uid_map.
func passthroughWhy(release, status, uidMap string) string {
	if !kernelAtLeast(release, 6, 9) {
		return fmt.Sprintf("kernel %s is older than 6.9", release)
	}
	if !hasCap(status, capSysAdmin) {
		return "no CAP_SYS_ADMIN"
	}
	if f := strings.Fields(uidMap); len(f) != 3 || f[0] != "0" || f[1] != "0" || f[2] != "4294967295" {
		return "running in a user namespace (rootless)"
	}
	return ""
}

// kernelAtLeast reports whether a release such as "6.18.3-amd64" is at
// least major.minor.
func kernelAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	maj, err1 := strconv.Atoi(parts[0])
	min, err2 := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return false
	}
	return maj > major || maj == major && min >= minor
}

// hasCap reports whether the CapEff line of a /proc/<pid>/status holds
// capability bit.
func hasCap(status string, bit uint) bool {
	for line := range strings.SplitSeq(status, "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && n&(1<<bit) != 0
		}
	}
	return false
}
