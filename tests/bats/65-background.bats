#!/usr/bin/env bats
# Background fetch (issue 4): once a layer is in use, the store fetches the rest of it at low
# priority, so containers keep working when the registry goes away.

load helpers

setup_file() {
    binary_or_skip_file || return 0
    esgz_fixture_setup bg busybox GZ ESGZ
}

teardown_file() {
    sgz_teardown_work
}

setup() {
    sgz_test_setup
    p4_instance store "$(store_mnt main)"
    p4_instance plain
}

teardown() {
    sgz_test_teardown
}

@test "after the background fetch a never-read file still reads right with the registry stopped" {
    podman4_plain pull -q "$GZ" >/dev/null
    run podman4_plain run --rm "$GZ" /bin/sha256sum /data/big/random-10m.bin
    assert_success
    local want=${output%% *}
    local off; off=$(store_log_lines main)
    podman4 pull -q "$ESGZ" >/dev/null
    run podman4 run --rm "$ESGZ" /bin/cat /data/small/hello.txt
    assert_success
    _fetched() { [ -n "$(store_events main "$off" "layer fetched in the background")" ]; }
    wait_until 120 _fetched || fail "no 'layer fetched in the background' within 120 s"
    stop_registry bg
    run podman4 run --rm "$ESGZ" /bin/sha256sum /data/big/random-10m.bin
    assert_success
    [ "${output%% *}" = "$want" ] || fail "sha256 through the store: ${output%% *}, want $want"
}
