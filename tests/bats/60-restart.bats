#!/usr/bin/env bats
# The store is stopped with SIGTERM and started again (same --root, same mount point) while podman
# has images whose layers live in it.

load helpers

setup_file() {
    binary_or_skip_file || return 0
    esgz_fixture_setup main busybox GZ ESGZ
}

teardown_file() {
    sgz_teardown_work
}

setup() {
    sgz_test_setup
    p4_instance store "$(store_mnt main)"
}

teardown() {
    sgz_test_teardown
}

@test "SIGTERM stops the store and unmounts its mount point" {
    start_store sigterm "$SGZ_WORK/mnt/sigterm"
    local pid mnt
    pid=$(store_pid sigterm); mnt=$(store_mnt sigterm)
    kill -TERM "$pid"
    wait_until 15 eval "! alive $pid" || fail "store pid $pid still running 15 s after SIGTERM"
    ! mountpoint -q "$mnt" || fail "$mnt is still mounted after the store exited"
    stop_store sigterm
}

@test "the store restarted between two podman 4 runs of the same image still serves it" {
    run podman4 pull -q "$ESGZ"
    assert_success
    run podman4 run --rm "$ESGZ" /bin/cat /data/small/hello.txt
    assert_success
    [ "$output" = "hello from the stargz-store e2e fixture" ]
    stop_store main || fail "the store did not stop cleanly on SIGTERM"
    start_store main "$SGZ_WORK/mnt/main"
    # files never read before the restart, so they must come from the registry through the new process
    run podman4 run --rm "$ESGZ" /bin/sh -c 'cat /data/deep/a/b/c/d/e/leaf.txt; wc -c < /data/medium/text-1.5m.txt'
    assert_success
    [ "${lines[0]}" = leaf ]
    [ "${lines[1]}" = 1572864 ]
}

# damage_files DIR: flip one bit in the middle of every regular file below DIR, in place, as a
# disk fault would; print how many files were damaged.
damage_files() {
    local f size off byte n=0
    while IFS= read -r -d '' f; do
        size=$(stat -c %s "$f")
        [ "$size" -gt 0 ] || continue
        off=$((size / 2))
        byte=$(od -An -tu1 -j "$off" -N1 "$f" | tr -d ' ')
        printf "\\$(printf %03o $((byte ^ 1)))" | dd of="$f" bs=1 seek="$off" conv=notrunc status=none
        n=$((n + 1))
    done < <(find "$1" -type f -print0)
    echo "$n"
}

@test "the store restarted after every file of its cache was damaged still serves the gzip image's bytes" {
    p4_instance plain
    local t=$SGZ_WORK/t$BATS_TEST_NUMBER n off
    podman4_plain pull -q "$GZ" >/dev/null
    podman4_plain run --rm "$GZ" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$t/gzip.view"
    [ "$(wc -l < "$t/gzip.view")" -gt 300 ]
    podman4 pull -q "$ESGZ" >/dev/null
    # every file read once: its chunks (and the whole-file entries of big files) are cached
    podman4 run --rm "$ESGZ" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$t/before.view"
    assert_same_view "$t/gzip.view" "$t/before.view"
    stop_store main || fail "the store did not stop cleanly on SIGTERM"
    n=$(damage_files "$SGZ_WORK/store-main/root/cache")
    log "damaged $n cache files"
    [ "$n" -gt 10 ] || fail "only $n files in the cache to damage"
    off=$(store_log_lines main)
    start_store main "$SGZ_WORK/mnt/main"
    podman4 run --rm "$ESGZ" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$t/after.view"
    assert_same_view "$t/gzip.view" "$t/after.view"
    run store_events main "$off" "cache entry corrupt: removed"
    [ -n "$output" ] || fail "the new store process never found a damaged cache entry"
    log "$(wc -l <<<"$output") damaged entries found and refetched"
}
