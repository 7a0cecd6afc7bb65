// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"syscall"
)

// The store's directories must keep other local users out: --root holds
// the cache of verified chunks of private images, and the mount point's
// parent is the only way to the mount (which itself refuses them, see
// layerfs "Who may call"). The store creates both 0700 when they are
// missing and refuses to start when another user could enter them, unless
// allow_shared_dirs (--allow-shared-dirs) says a special setup wants it.
// Only the directory itself is checked, not its ancestors: a private
// directory cannot be entered whatever lies above it.

// allowSharedHint names the override in refusals.
const allowSharedHint = "--allow-shared-dirs (config: allow_shared_dirs = true)"

// privateDir makes sure dir exists and only the store's user can enter
// it. A missing dir is created 0700, with any missing parents. what says
// what dir is, for messages. With allowShared an existing dir that others
// can enter is accepted, and a warning says so.
func privateDir(dir, what string, allowShared bool, log *slog.Logger) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("create %s %s: %w", what, dir, err)
		}
		fi, err = os.Stat(dir)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, dir, err)
	}
	why, fix := shared(dir, fi, uint32(os.Geteuid()))
	switch {
	case why == "":
		return nil
	case allowShared:
		log.Warn("other users can enter a directory of the store (allow_shared_dirs)", "dir", dir, "what", what, "why", why)
		return nil
	}
	return fmt.Errorf("%s %s is %s: other local users could reach %s; %s, or start with %s if this is intended",
		what, dir, why, exposed(what), fix, allowSharedHint)
}

// shared says why a user other than euid could enter dir, which fi
// describes, and what to run about it; why is "" if nobody can.
func shared(dir string, fi fs.FileInfo, euid uint32) (why, fix string) {
	if !fi.IsDir() {
		return "not a directory", "choose a directory"
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != euid {
		return fmt.Sprintf("owned by uid %d, not by the store's uid %d", st.Uid, euid),
			fmt.Sprintf("run `chown %d %s && chmod 0700 %s`", euid, dir, dir)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Sprintf("mode %#o, open to group or others", perm), fmt.Sprintf("run `chmod 0700 %s`", dir)
	}
	return "", ""
}

// exposed is what other users could reach through a directory.
func exposed(what string) string {
	if what == whatRoot {
		return "the cached chunks of private images"
	}
	return "the store's mount"
}

// What a checked directory is, in messages.
const (
	whatRoot      = "--root"
	whatMntParent = "the mount point's parent directory"
)
