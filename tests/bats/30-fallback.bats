#!/usr/bin/env bats
# A plain gzip image (no TOC) still pulls and runs with the store configured: Podman 4 asks the
# store by blob digest, the store declines, and storage pulls the layer normally.

load helpers

setup_file() {
    binary_or_skip_file || return 0
    require_store_binary
    require_tools podman runc docker-registry skopeo jq curl ss
    sgz_setup_work
    start_registry main
    export REG=$(reg_addr main)
    export GZ=$REG/fixtures/busybox:gzip
    push_fixture busybox "$GZ"
    start_store main "$SGZ_WORK/mnt/main"
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

@test "podman 4 with the store pulls and runs a plain gzip image as ordinary local layers" {
    run podman4 pull -q "$GZ"
    assert_success
    run podman4 run --rm "$GZ" /bin/sh -c 'cat /data/small/hello.txt; sha256sum /data/big/random-10m.bin'
    assert_success
    [ "${lines[0]}" = "hello from the stargz-store e2e fixture" ]
    # no layer of this image may point into the store
    local root=$SGZ_WORK/t$BATS_TEST_NUMBER/p4-store/root
    run find "$root/overlay" -maxdepth 2 -name additionallayer
    assert_success
    [ -z "$output" ] || fail "layers were taken from the store: $output"
}

@test "the store logs why it did not serve a plain gzip layer lazily" {
    # a fresh store: the warning is logged once per layer and process, later checks log at debug level
    start_store fresh "$SGZ_WORK/mnt/fresh"
    p4_instance store "$(store_mnt fresh)"
    run podman4 pull -q "$GZ"
    assert_success
    local d w
    w=$(store_events fresh 0 "layer not served lazily")
    for d in $(layer_digests "$GZ"); do
        has_event "$w" '.digest == $d and (.err // "") != ""' --arg d "$d" ||
            fail "no 'layer not served lazily' warning with err for $d; got: $w"
    done
    # and it stays silent about use/release of layers it did not serve
    run store_events fresh 0 use
    [ -z "$output" ] || fail "'use' logged for a layer the store did not serve: $output"
}
