#!/usr/bin/env bats
# Podman 5.4 (Debian trixie, in a chroot; Gen B: the store is asked by TOC digest) runs eStargz
# images through stargz-store.  The store runs on the host and mounts under the chroot's root,
# after tests/podman5/setup.sh made its self-bind (otherwise the chroot would not see the mount).

load helpers

setup_file() {
    binary_or_skip_file || return 0
    require_store_binary
    require_tools docker-registry skopeo jq curl ss debootstrap flock chroot
    sgz_setup_work
    p5_setup_file
    start_registry main
    p5_sync_registries
    export REG=$(reg_addr main)
    export GZ=$REG/fixtures/busybox:gzip ESGZ=$REG/fixtures/busybox:esgz
    export LGZ=$REG/fixtures/layers:gzip LESGZ=$REG/fixtures/layers:esgz
    push_fixture busybox "$GZ"
    push_fixture layers "$LGZ"
    convert "$GZ" "$ESGZ"
    convert "$LGZ" "$LESGZ"
    check_estargz "$ESGZ"
    check_estargz "$LESGZ"
    # chroot path of the mount point: $P5_DIR/mnt/main
    start_store main "$P5_HOSTDIR/mnt/main"
}

teardown_file() {
    sgz_teardown_work
    p5_teardown_file
}

setup() {
    sgz_test_setup
    p5_instance store "$P5_DIR/mnt/main"
    p5_instance plain
}

teardown() {
    sgz_test_teardown
}

@test "podman 5 pulls every layer of the eStargz image from the store by TOC digest" {
    local off; off=$(store_log_lines main)
    run podman5 pull -q "$ESGZ"
    assert_success
    local d uses
    uses=$(store_events main "$off" use)
    for d in $(toc_digests "$ESGZ"); do
        has_event "$uses" '.digest == $d' --arg d "$d" || fail "no 'use' of TOC $d in the store log"
    done
    run store_events main "$off" "layer not served lazily"
    [ -z "$output" ] || fail "store fell back: $output"
}

@test "podman 5 run of the eStargz image shows the same files, modes, owners and links as the gzip image" {
    local want=$SGZ_WORK/t$BATS_TEST_NUMBER.gzip.view got=$SGZ_WORK/t$BATS_TEST_NUMBER.esgz.view
    podman5_plain pull -q "$GZ" >/dev/null
    podman5_plain run --rm "$GZ" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$want"
    podman5 pull -q "$ESGZ" >/dev/null
    podman5 run --rm "$ESGZ" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$got"
    [ "$(wc -l < "$want")" -gt 300 ]
    assert_same_view "$want" "$got"
}

@test "podman 5 run that reads a few files fetches far fewer blob bytes than the image's compressed size" {
    # background fetch off: only the container's own reads may fetch
    SGZ_STORE_CONFIG=$(lazy_only_config) start_store lazy "$P5_HOSTDIR/mnt/lazy"
    p5_instance store "$P5_DIR/mnt/lazy"
    run_few_files_and_check_bytes podman5
}

@test "podman 5 rmi releases every layer in the store (refs=0, layer freed)" {
    podman5 pull -q "$ESGZ" >/dev/null
    run podman5 run --rm "$ESGZ" /bin/cat /data/small/hello.txt
    assert_success
    local off; off=$(store_log_lines main)
    run podman5 rmi "$ESGZ"
    assert_success
    assert_released main "$off" $(toc_digests "$ESGZ")
}

@test "podman 5 sees whiteouts and opaque directories across layers as in the unpacked gzip image" {
    local want=$SGZ_WORK/t$BATS_TEST_NUMBER.gzip.view got=$SGZ_WORK/t$BATS_TEST_NUMBER.esgz.view
    podman5_plain pull -q "$LGZ" >/dev/null
    podman5_plain run --rm "$LGZ" /bin/sh -c "$(list_tree_script)" sh $SGZ_LAYERS_DIRS > "$want"
    podman5 pull -q "$LESGZ" >/dev/null
    podman5 run --rm "$LESGZ" /bin/sh -c "$(list_tree_script)" sh $SGZ_LAYERS_DIRS > "$got"
    assert_same_view "$want" "$got"
    run podman5 run --rm "$LESGZ" /bin/ls -a /
    assert_success
    [[ "$output" != *gone* ]] || fail "/gone (whited out in layer 2) is visible: $output"
}

@test "podman 5 with the store still pulls and runs a plain gzip image (no TOC, store not asked)" {
    run podman5 pull -q "$GZ"
    assert_success
    run podman5 run --rm "$GZ" /bin/cat /data/small/hello.txt
    assert_success
    [ "$output" = "hello from the stargz-store e2e fixture" ]
}
