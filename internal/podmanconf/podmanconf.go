// SPDX-License-Identifier: Apache-2.0

// Package podmanconf writes the configuration of a throw-away Podman
// instance: the containers.conf and storage.conf that `stargz-store
// optimize` and stargz-bench hand to Podman through CONTAINERS_CONF and
// CONTAINERS_STORAGE_CONF, so that the host's /etc/containers is never
// read or touched.
//
// The shell scripts (the bats helpers, the Podman 5 chroot setup and the
// demo) write the same files with scripts/podman-conf.bash; a test checks
// that both give the same bytes.
//
// The roots go into storage.conf, never onto the command line: given as
// --root or --runroot, they make Podman (4.3.1 and 5.x alike) drop every
// storage.conf driver option, the additional layer store included.
package podmanconf

import (
	"fmt"
	"strings"
)

// NoAuth is an auth.json without credentials, for REGISTRY_AUTH_FILE:
// a throw-away instance must not pick up the host's credentials.
const NoAuth = `{"auths":{}}`

// ContainersConf returns a containers.conf for a throw-away instance whose
// temporary files, including its lock files, live under tmpDir.
func ContainersConf(tmpDir string) []byte {
	return fmt.Appendf(nil, `[containers]
# Explicit limits: Podman's default (1048576) can exceed the host's hard RLIMIT_NOFILE.
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
# No bridge networking: netavark would add podman0 and firewall rules to the shared host netns.
netns = "host"

[engine]
# crun fails on hosts with hybrid cgroups ("cgroups in hybrid mode not supported").
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
# File locks under tmp_dir instead of the shared /dev/shm/libpod_lock: a podman with a fresh
# tmp_dir frees every lock in the shm table, which would break any other podman on the host.
lock_type = "file"
tmp_dir = %s
`, quote(tmpDir))
}

// StorageConf returns a storage.conf (overlay) with the given graph root
// and run root and, if als is not empty, the stargz-store mounted at als
// as additional layer store (with the :ref option Podman needs to pass
// the image reference).
func StorageConf(graphRoot, runRoot, als string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "[storage]\ndriver = \"overlay\"\ngraphroot = %s\nrunroot = %s\n", quote(graphRoot), quote(runRoot))
	if als != "" {
		fmt.Fprintf(&b, "[storage.options]\nadditionallayerstores = [%s]\n", quote(als+":ref"))
	}
	return []byte(b.String())
}

// quote writes s as a TOML basic string: the two characters TOML requires
// escaped in a path are the quote and the backslash.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
