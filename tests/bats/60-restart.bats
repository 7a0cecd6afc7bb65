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
