#!/usr/bin/env bats
# Local users: only root (the store's user) may reach the mount, the store keeps its directories
# private, and containers keep working, whatever user they run as: a setuid-root binary of the
# image, dynamically linked programs a non-root process page-faults in, user namespaces (a known
# limit, see README).  Fixture "users" (fixtures/build-fixtures.sh), lazily with Podman 4 and 5.

load helpers

setup_file() {
    binary_or_skip_file || return 0
    require_store_binary
    require_tools podman runc docker-registry skopeo jq curl ss setpriv debootstrap flock chroot
    sgz_setup_work
    p5_setup_file
    start_registry main
    p5_sync_registries
    export REG=$(reg_addr main)
    export UGZ=$REG/fixtures/users:gzip UESGZ=$REG/fixtures/users:esgz
    push_fixture users "$UGZ"
    convert "$UGZ" "$UESGZ"
    check_estargz "$UESGZ"
    start_store main "$SGZ_WORK/mnt/main"
    start_store p5 "$P5_HOSTDIR/mnt/p5"
}

teardown_file() {
    sgz_teardown_work
    p5_teardown_file
}

setup() {
    sgz_test_setup
    p4_instance store "$(store_mnt main)"
    p4_instance plain
}

teardown() {
    chmod 0700 "$SGZ_WORK" 2>/dev/null || true   # opened by some tests
    sgz_test_teardown
}

# as_nobody CMD...: CMD as uid and gid 65534, without supplementary groups.
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }

# layer_dir MNT REF: the store's directory of REF's (only) layer under MNT, by blob digest.
layer_dir() { echo "$1/$(printf %s "$2" | base64 -w0)/$(layer_digests "$2" | head -1)"; }

# refused_to_nobody PATH-OR-CMD...: each command, run as nobody, fails with "Permission denied".
refused_to_nobody() {
    local c
    for c in "$@"; do
        run as_nobody sh -c "$c"
        [ "$status" -ne 0 ] && [[ "$output" == *"Permission denied"* ]] ||
            fail "as nobody, '$c' gave status $status: $output"
    done
}

@test "another local user cannot list, read or exec anything through the mount, even with its parent opened" {
    local mnt l
    mnt=$(store_mnt main)
    l=$(layer_dir "$mnt" "$UESGZ")
    # no allow_other: the kernel itself refuses every user but the store's
    run awk -v m="$mnt" '$5 == m' /proc/self/mountinfo
    [[ "$output" == *fuse.stargz-store* && "$output" != *allow_other* && "$output" != *nosuid* ]] ||
        fail "mount options: $output"
    # root (as storage does) resolves the layer and reads through it; the kernel now caches entries
    run cat "$l/diff/data/hello.txt" "$l/diff/data/secret"
    assert_success
    [ "${lines[0]}" = "readable by everyone" ] && [ "${lines[1]}" = "root only" ]
    run "$l/diff/suid/cat" "$l/diff/data/hello.txt"
    assert_success
    ls "$l/diff/data" "$l/diff/bin" >/dev/null
    # the private parent keeps nobody out ...
    refused_to_nobody "ls $mnt"
    # ... and with the way opened by mistake, the mount itself refuses
    chmod 0755 "$SGZ_WORK" "$(dirname "$mnt")"
    refused_to_nobody "ls $mnt" "stat $l" "ls $l/diff/data" "stat $l/diff/data/hello.txt" \
        "cat $l/diff/data/hello.txt" "cat $l/diff/data/secret" "cat $l/blob" "cat $l/info" \
        "readlink -v $l/diff/bin/sh" "$l/diff/bin/busybox true" "$l/diff/suid/cat /etc/hostname" "touch $l/use"
    chmod 0700 "$(dirname "$mnt")"
}

@test "the store refuses a mount point parent other users can enter, and starts with allow_shared_dirs" {
    local open=$SGZ_WORK/open
    mkdir -m 0755 "$open"
    : > "$SGZ_WORK/empty.toml"
    run timeout 30 "$SGZ_BIN" --root "$SGZ_WORK/refused-root" --config "$SGZ_WORK/empty.toml" "$open/mnt"
    assert_failure
    [[ "$output" == *"parent directory $open is mode 0755"* && "$output" == *"chmod 0700 $open"* &&
        "$output" == *--allow-shared-dirs* && "$output" == *allow_shared_dirs* ]] || fail "unclear refusal: $output"
    [ ! -e "$open/mnt" ] || fail "the refused mount point was created"
    # --root likewise
    mkdir -m 0755 "$SGZ_WORK/open-root"
    run timeout 30 "$SGZ_BIN" --root "$SGZ_WORK/open-root" --config "$SGZ_WORK/empty.toml" "$SGZ_WORK/mnt/refused"
    assert_failure
    [[ "$output" == *"--root $SGZ_WORK/open-root is mode 0755"* ]] || fail "unclear refusal: $output"
    # the override: the store starts, says so, and podman uses it
    printf 'allow_shared_dirs = true\n' > "$SGZ_WORK/allow-shared.toml"
    SGZ_STORE_CONFIG=$SGZ_WORK/allow-shared.toml start_store shared "$open/mnt"
    run store_events shared 0 "other users can enter a directory of the store (allow_shared_dirs)"
    [ -n "$output" ] || fail "no warning about the shared directory"
    p4_instance store "$open/mnt"
    podman4 pull -q "$UESGZ" >/dev/null
    run podman4 run --rm "$UESGZ" /bin/cat /data/hello.txt
    assert_success
    [ "$output" = "readable by everyone" ] || fail "output: $output"
    # other users reach the mount now, and are refused there
    chmod 0755 "$SGZ_WORK"
    local l; l=$(layer_dir "$open/mnt" "$UESGZ")
    refused_to_nobody "ls $open/mnt" "cat $l/diff/data/hello.txt" "ls $l/diff" "$l/diff/bin/busybox true"
    stop_store shared
}

@test "a root podman 4 container runs the lazily pulled image's setuid-root binary as uid 65534" {
    local off; off=$(store_log_lines main)
    run podman4 pull -q "$UESGZ"
    assert_success
    # effective uid 0 for a process of uid 65534: it reads the root-only file
    run podman4 run --rm --user 65534:65534 "$UESGZ" /suid/cat /proc/self/status /data/secret
    assert_success
    [[ "$output" == *"Uid:"$'\t'"65534"$'\t'"0"$'\t'* && "$output" == *"root only"* ]] || fail "setuid did not apply: $output"
    run podman4 run --rm --user 65534:65534 "$UESGZ" /bin/busybox id -u
    [ "$output" = 65534 ]
    run store_events main "$off" "layer not served lazily"
    [ -z "$output" ] || fail "store fell back: $output"
}

@test "a podman 4 container running as uid 65534 runs dynamically linked programs and reads files of a lazily pulled image" {
    podman4 pull -q "$UESGZ" >/dev/null
    # the loader and libc are mapped and page-faulted in by the uid-65534 process: FUSE READs as 65534
    run podman4 run --rm --user 65534:65534 "$UESGZ" /dyn/cat /data/hello.txt
    assert_success
    [ "$output" = "readable by everyone" ] || fail "output: $output"
    [ "$(podman4 run --rm --user 65534:65534 "$UESGZ" /dyn/cat /dyn/cat | sha256sum)" = \
        "$(sha256sum < /bin/cat)" ] || fail "the program read back differs"
    # the image's own permissions still apply inside the container, as with a pulled image
    run podman4 run --rm --user 65534:65534 "$UESGZ" /dyn/cat /data/secret
    assert_failure
    [[ "$output" == *"Permission denied"* ]] || fail "$output"
}

@test "a root podman 5 container runs the setuid-root binary and dynamically linked programs as uid 65534" {
    p5_instance store "$P5_DIR/mnt/p5"
    local off; off=$(store_log_lines p5)
    run podman5 pull -q "$UESGZ"
    assert_success
    run podman5 run --rm --user 65534:65534 "$UESGZ" /suid/cat /proc/self/status /data/secret
    assert_success
    [[ "$output" == *"Uid:"$'\t'"65534"$'\t'"0"$'\t'* && "$output" == *"root only"* ]] || fail "setuid did not apply: $output"
    run podman5 run --rm --user 65534:65534 "$UESGZ" /dyn/cat /data/hello.txt
    assert_success
    [ "$output" = "readable by everyone" ]
    run store_events p5 "$off" "layer not served lazily"
    [ -z "$output" ] || fail "store fell back: $output"
}

@test "--uidmap cannot use a lazily served layer (storage does not map it; README), a normal pull can" {
    # containers/storage would have to chown an ID-mapped copy of the read-only layer; it uses the
    # layer as is, and runc, root in the new user namespace, may not create its mount points in it.
    podman4 pull -q "$UESGZ" >/dev/null
    run podman4 run --rm --network none --uidmap 0:100000:65536 --gidmap 0:100000:65536 "$UESGZ" /bin/cat /data/hello.txt
    assert_failure
    [[ "$output" == *"permission denied"* ]] || fail "another failure than the known one: $output"
    podman4_plain pull -q "$UGZ" >/dev/null
    run podman4_plain run --rm --network none --uidmap 0:100000:65536 --gidmap 0:100000:65536 "$UGZ" /bin/cat /data/hello.txt
    assert_success
    [ "$output" = "readable by everyone" ]
    # the store keeps serving the image to containers without a mapping
    run podman4 run --rm "$UESGZ" /bin/cat /data/hello.txt
    assert_success
}
