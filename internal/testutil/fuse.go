// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// RequireFUSEEnv names the variable that, set to "1" (as in CI), makes
// RequireFUSE fail the test instead of skipping it, so that FUSE tests
// cannot be skipped silently.
const RequireFUSEEnv = "STARGZ_STORE_REQUIRE_FUSE"

// RequireFUSE skips t unless a FUSE file system can be mounted here:
// /dev/fuse opens, and the process is root or has fusermount3 (or
// fusermount). The store's mount has no allow_other, so user_allow_other
// is not needed.
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
	return ""
}
