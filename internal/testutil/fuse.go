// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// RequireFUSE skips the test when FUSE mounts cannot work here: no
// /dev/fuse that opens, or neither root nor a fusermount helper. With
// STARGZ_STORE_REQUIRE_FUSE=1 (as in CI) it fails instead, so that a
// broken runner cannot skip the FUSE tests silently.
func RequireFUSE(t testing.TB) {
	t.Helper()
	reason := fuseProblem()
	if reason == "" {
		return
	}
	if os.Getenv("STARGZ_STORE_REQUIRE_FUSE") == "1" {
		t.Fatalf("FUSE required (STARGZ_STORE_REQUIRE_FUSE=1) but unusable: %s", reason)
	}
	t.Skipf("FUSE unusable: %s", reason)
}

func fuseProblem() string {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return err.Error()
	}
	f.Close()
	if os.Geteuid() == 0 {
		return ""
	}
	for _, name := range []string{"fusermount3", "fusermount"} {
		if _, err := exec.LookPath(name); err == nil {
			return ""
		}
	}
	return "not root and no fusermount3 or fusermount in PATH"
}
