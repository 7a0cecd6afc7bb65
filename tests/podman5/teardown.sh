#!/bin/bash
# teardown.sh: unmount everything under the Podman 5 chroot (the chroot stays on disk for the next run).
#
# Mounts are removed deepest first, by path taken from /proc/self/mountinfo: podman's overlay and shm
# mounts, FUSE stores mounted under the root, then run, dev/shm, dev/pts, dev, the cgroup tree, sys,
# proc and the root's self-bind.  A FUSE mount whose daemon is still running is unmounted lazily; stop
# such daemons (by PID) before calling this script.  Processes are never killed here.
#
# Environment: P5_BASE (default /var/tmp/podman5-chroot).  Exit status 1 if mounts are left.
set -uo pipefail
P5_BASE=${P5_BASE:-/var/tmp/podman5-chroot}
ROOT=$P5_BASE/root

below() { awk -v r="$ROOT" '$5==r || index($5, r"/")==1 {print $5}' /proc/self/mountinfo | sort -r | uniq; }

for _ in 1 2 3 4; do
  mps=$(below)
  [ -z "$mps" ] && break
  for m in $mps; do umount "$m" 2>/dev/null || true; done
done
# whatever is still busy: detach it
for m in $(below); do umount -l "$m" 2>/dev/null || true; done
left=$(below | wc -l)
if [ "$left" -ne 0 ]; then
  echo "podman5/teardown.sh: $left mounts left under $ROOT:" >&2; below >&2; exit 1
fi
echo "podman5 chroot unmounted: $ROOT"
