#!/bin/bash
# setup.sh [build|mount|all]: a Debian trixie chroot with Podman 5 on a Debian 12 host, for the e2e tests.
#
#   build  debootstrap the chroot if it is not complete yet (about 1.5 min, about 350 MB; cached)
#   mount  bind/tmpfs mounts that podman needs inside the chroot (idempotent: skips what is mounted)
#   all    both (default)
#
# Afterwards: chroot "$P5_BASE/root" env PODMAN_IGNORE_CGROUPSV1_WARNING=1 podman ...
# Every path podman sees is a chroot path.  Undo the mounts with teardown.sh (the chroot stays on disk).
#
# Environment: P5_BASE (default /var/tmp/podman5-chroot), P5_SUITE (trixie), P5_MIRROR
# (http://deb.debian.org/debian), P5_PACKAGES (comma-separated, added to the defaults).
#
# Why each step is there (learned on this host, see also the header of teardown.sh):
#  * $ROOT is bind-mounted onto itself: runc's pivot_root fails with EINVAL ("mount /, flags: 0x84000")
#    when the rootfs' parent is not a mount point.  The bind is NOT recursive, so anything that must be
#    visible inside the chroot (a FUSE store) has to be mounted under $ROOT after this script ran.
#  * /dev/shm is a private tmpfs: podman's lock table lives in /dev/shm/libpod_lock, and a podman
#    that sees a fresh tmp_dir frees every lock in it, which would break a host podman sharing the file.
#  * /run is a tmpfs, as on a booted system, so each mount cycle looks like a fresh boot to podman.
#  * Every bind of a host tree is made rslave before anything is mounted below it, so nothing mounted
#    inside the chroot propagates back into the host's /dev, /sys or cgroup trees.
#  * The chroot's /etc/containers gets runc (crun 1.21 fails: "cgroups in hybrid mode not supported"),
#    netns=host (no netavark bridge in the shared host netns) and fixed ulimits.  The e2e tests pass
#    their own CONTAINERS_CONF / CONTAINERS_STORAGE_CONF files anyway.
set -euo pipefail

P5_BASE=${P5_BASE:-/var/tmp/podman5-chroot}
ROOT=$P5_BASE/root
SUITE=${P5_SUITE:-trixie}
MIRROR=${P5_MIRROR:-http://deb.debian.org/debian}
PKGS=podman,runc,crun,fuse3,ca-certificates${P5_PACKAGES:+,$P5_PACKAGES}
WHAT=${1:-all}
STAMP=$P5_BASE/.complete      # contents: suite + package list; a root without it is rebuilt

log() { echo "podman5/setup.sh: $*" >&2; }
# podman_containers_conf and podman_storage_conf, shared with the bats helpers and the demo.
source "$(dirname "$0")/../../scripts/podman-conf.bash"
[ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }
case "$WHAT" in build|mount|all) ;; *) log "usage: $0 [build|mount|all]"; exit 2 ;; esac

mkdir -p "$P5_BASE"
# One setup at a time (parallel bats files, make e2e-deps and a test run started together).
exec 9>"$P5_BASE/.lock"
flock 9

build() {
  local want="$SUITE $PKGS"
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x "$ROOT/usr/bin/podman" ]; then
    return 0
  fi
  if [ -x "$ROOT/usr/bin/podman" ]; then
    # Made by an earlier run with other packages, by an older version of this script or by hand:
    # adopt it, installing only what is missing (no network when nothing is).
    log "adopting existing chroot $ROOT"
    chroot "$ROOT" dpkg -s ${PKGS//,/ } >/dev/null 2>&1 || {
      chroot "$ROOT" apt-get update -qq
      chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${PKGS//,/ }
      chroot "$ROOT" apt-get clean || true
    }
  elif awk -v r="$ROOT" '$5==r || index($5, r"/")==1 {f=1} END {exit !f}' /proc/self/mountinfo; then
    log "$ROOT is incomplete but mounted; run teardown.sh first"; exit 1
  else
    command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap; }
    local tmp=$P5_BASE/root.partial start
    rm -rf "$tmp"
    start=$(date +%s)
    log "debootstrap $SUITE into $tmp (about 1.5 min)"
    debootstrap --variant=minbase --include="$PKGS" "$SUITE" "$tmp" "$MIRROR" > "$P5_BASE/debootstrap.log" 2>&1 || {
      log "debootstrap failed; last lines of $P5_BASE/debootstrap.log:"; tail -20 "$P5_BASE/debootstrap.log" >&2; exit 1; }
    chroot "$tmp" apt-get clean || true
    rm -rf "$ROOT"
    mv "$tmp" "$ROOT"
    log "debootstrap took $(( $(date +%s) - start ))s"
  fi
  [ -x "$ROOT/usr/bin/podman" ] || { log "no podman in $ROOT after the build"; exit 1; }
  write_config
  echo "$want" > "$STAMP"
}

write_config() {
  mkdir -p "$ROOT/etc/containers" "$ROOT/srv/podman5/storage" "$ROOT/srv/sgz"
  { echo "# Written by stargz-store tests/podman5/setup.sh."
    podman_containers_conf /run/podman5/libpod
  } > "$ROOT/etc/containers/containers.conf"
  { echo "# Written by stargz-store tests/podman5/setup.sh.  The e2e tests use their own storage.conf files"
    echo "# (CONTAINERS_STORAGE_CONF) with --root/--runroot under /srv/sgz and /run/sgz."
    podman_storage_conf /srv/podman5/storage /run/podman5/storage
  } > "$ROOT/etc/containers/storage.conf"
}

mounts() {
  [ -x "$ROOT/usr/bin/podman" ] || { log "no chroot at $ROOT; run '$0 build' first"; exit 1; }
  ismnt() { mountpoint -q "$1"; }
  ismnt "$ROOT"               || { mount --bind "$ROOT" "$ROOT"; mount --make-private "$ROOT"; }
  ismnt "$ROOT/proc"          || { mount --bind /proc "$ROOT/proc"; mount --make-rslave "$ROOT/proc"; }
  ismnt "$ROOT/sys"           || { mount --bind /sys "$ROOT/sys"; mount --make-rslave "$ROOT/sys"; }
  ismnt "$ROOT/sys/fs/cgroup" || { mount --rbind /sys/fs/cgroup "$ROOT/sys/fs/cgroup"; mount --make-rslave "$ROOT/sys/fs/cgroup"; }
  ismnt "$ROOT/dev"           || { mount --bind /dev "$ROOT/dev"; mount --make-rslave "$ROOT/dev"; }
  ismnt "$ROOT/dev/pts"       || { mount --bind /dev/pts "$ROOT/dev/pts"; mount --make-rslave "$ROOT/dev/pts"; }
  ismnt "$ROOT/dev/shm"       || mount -t tmpfs -o mode=1777,nosuid,nodev shm "$ROOT/dev/shm"
  ismnt "$ROOT/run"           || { mount -t tmpfs -o mode=755,nosuid,nodev run "$ROOT/run"; mkdir -p "$ROOT/run/lock"; chmod 1777 "$ROOT/run/lock"; }
  mkdir -p "$ROOT/srv/sgz"
}

case "$WHAT" in
  build) build ;;
  mount) mounts ;;
  all)   build; mounts ;;
esac
if [ "$WHAT" != build ]; then
  echo "podman5 chroot ready: $ROOT ($(chroot "$ROOT" env PODMAN_IGNORE_CGROUPSV1_WARNING=1 podman --version))"
else
  echo "podman5 chroot built: $ROOT"
fi
