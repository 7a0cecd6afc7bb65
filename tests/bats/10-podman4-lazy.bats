#!/usr/bin/env bats
# Podman 4.3.1 (the host's; Gen A: the store is asked by layer blob digest) runs an eStargz image
# through stargz-store.

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
    p4_instance plain
}

teardown() {
    sgz_test_teardown
}

@test "podman 4 pulls every layer of the eStargz image from the store" {
    local off; off=$(store_log_lines main)
    run podman4 pull -q "$ESGZ"
    assert_success
    local d uses
    uses=$(store_events main "$off" use)
    for d in $(layer_digests "$ESGZ"); do
        has_event "$uses" '.digest == $d' --arg d "$d" || fail "no 'use' of layer $d in the store log"
    done
    run store_events main "$off" "layer not served lazily"
    [ -z "$output" ] || fail "store fell back: $output"
}

@test "podman 4 run of the eStargz image shows the same files, modes, owners and links as the gzip image" {
    local want=$SGZ_WORK/t$BATS_TEST_NUMBER/gzip.view got=$SGZ_WORK/t$BATS_TEST_NUMBER/esgz.view
    podman4_plain pull -q "$GZ" >/dev/null
    podman4_plain run --rm "$GZ" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$want"
    podman4 pull -q "$ESGZ" >/dev/null
    podman4 run --rm "$ESGZ" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$got"
    [ "$(wc -l < "$want")" -gt 300 ]
    assert_same_view "$want" "$got"
}

@test "podman 4 run of the eStargz image shows no extra entries in / (no landmark or TOC files)" {
    podman4_plain pull -q "$GZ" >/dev/null
    podman4 pull -q "$ESGZ" >/dev/null
    run podman4_plain run --rm "$GZ" /bin/ls -a /
    assert_success
    local want=$output
    run podman4 run --rm "$ESGZ" /bin/ls -a /
    assert_success
    [ "$output" = "$want" ] || fail "ls -a / differs: gzip: $(echo $want) / eStargz: $(echo $output)"
}

@test "podman 4 run that reads a few files fetches far fewer blob bytes than the image's compressed size" {
    # a fresh store (empty cache), so nothing fetched by earlier tests counts
    # background fetch off: only the container's own reads may fetch
    SGZ_STORE_CONFIG=$(lazy_only_config) start_store lazy "$SGZ_WORK/mnt/lazy"
    p4_instance store "$(store_mnt lazy)"
    run_few_files_and_check_bytes podman4
}

@test "podman 4 rmi releases every layer in the store (refs=0, layer freed)" {
    podman4 pull -q "$ESGZ" >/dev/null
    run podman4 run --rm "$ESGZ" /bin/cat /data/small/hello.txt
    assert_success
    local off; off=$(store_log_lines main)
    run podman4 rmi "$ESGZ"
    assert_success
    assert_released main "$off" $(layer_digests "$ESGZ")
}

@test "podman 4 save of the lazily pulled image exports each layer through a blob file the store checked" {
    local off t=$SGZ_WORK/t$BATS_TEST_NUMBER d copied
    podman4 pull -q "$ESGZ" >/dev/null
    off=$(store_log_lines main)
    run podman4 save -o "$t/esgz.tar" "$ESGZ"
    assert_success
    [ -s "$t/esgz.tar" ] || fail "podman save wrote nothing"
    copied=$(store_events main "$off" "blob copied into the cache for its blob file")
    for d in $(layer_digests "$ESGZ"); do
        has_event "$copied" '.digest == $d' --arg d "$d" || fail "layer $d was not exported through a checked blob"
    done
}
