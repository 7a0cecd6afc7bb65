// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireFUSEEnv, when set to "1" (as in CI), makes RequireFUSE fail the
// test instead of skipping it, so that FUSE tests cannot be skipped
// silently.
const RequireFUSEEnv = "STARGZ_STORE_REQUIRE_FUSE"

// RequireFUSE skips t unless a FUSE file system with allow_other can be
// mounted here: /dev/fuse opens, and the process is root or has
// fusermount3 (or fusermount) with user_allow_other in /etc/fuse.conf.
// With STARGZ_STORE_REQUIRE_FUSE=1 it fails t instead of skipping.
func RequireFUSE(t testing.TB) {
	t.Helper()
	reason := fuseUnusable()
	if reason == "" {
		return
	}
	if os.Getenv(RequireFUSEEnv) == "1" {
		t.Fatalf("FUSE is required (%s=1) but unusable: %s", RequireFUSEEnv, reason)
	}
	t.Skipf("FUSE is unusable: %s", reason)
}

// fuseUnusable returns why FUSE mounts cannot work, or "".
func fuseUnusable() string {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return err.Error()
	}
	f.Close()
	if os.Geteuid() == 0 {
		return ""
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		if _, err := exec.LookPath("fusermount"); err != nil {
			return "not root and no fusermount3 or fusermount in PATH"
		}
	}
	if !userAllowOther() {
		return "not root and /etc/fuse.conf lacks user_allow_other"
	}
	return ""
}

func userAllowOther() bool {
	f, err := os.Open("/etc/fuse.conf")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "user_allow_other" {
			return true
		}
	}
	return false
}
