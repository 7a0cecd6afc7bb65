#!/usr/bin/env bats
# zstd:chunked, the format Podman itself pushes, served lazily by stargz-store to Podman 5 (Gen B:
# asked by manifest-checksum) and Podman 4 (Gen A: asked by blob digest); and stargz-store convert
# --format zstd:chunked, whose output Podman 5's own partial pull and a plain Podman 4 pull accept.

load helpers
load zstd_helpers

setup_file() {
    binary_or_skip_file || return 0
    require_store_binary
    require_tools podman runc docker-registry skopeo jq curl ss debootstrap flock chroot
    sgz_setup_work
    p5_setup_file
    start_registry main
    p5_sync_registries
    export REG=$(reg_addr main)
    export GZ=$REG/fixtures/busybox:gzip ESGZ=$REG/fixtures/busybox:esgz
    export ZP5=$REG/fixtures/busybox:zstd-podman ZOURS=$REG/fixtures/busybox:zstd-ours
    push_fixture busybox "$GZ"
    p5_push_zstd "$GZ" "$ZP5"
    convert_zstd "$GZ" "$ZOURS"
    convert "$GZ" "$ESGZ"
    check_zstdchunked "$ZP5"
    check_zstdchunked "$ZOURS"
    check_estargz "$ESGZ"
    # under the chroot's root, so Podman 5 sees it; Podman 4 uses the host path of the same mount
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
    p4_instance store "$P5_HOSTDIR/mnt/main"
    p4_instance plain
}

teardown() {
    sgz_test_teardown
}

# gzip_view_p5 FILE: the listing of the gzip image under Podman 5 without the store (the reference).
gzip_view_p5() {
    podman5_plain pull -q "$GZ" >/dev/null
    podman5_plain run --rm "$GZ" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$1"
    [ "$(wc -l < "$1")" -gt 300 ]
}

# check_served_p5 REF: Podman 5 asked the store for every layer of REF by its manifest-checksum,
# and the store served them lazily.
check_served_p5() {
    local off=$1 ref=$2 d uses
    uses=$(store_events main "$off" use)
    for d in $(zstd_toc_digests "$ref"); do
        has_event "$uses" '.digest == $d' --arg d "$d" || fail "no 'use' of manifest-checksum $d in the store log"
    done
    run store_events main "$off" "layer not served lazily"
    [ -z "$output" ] || fail "store fell back: $output"
}

@test "podman 5 runs the Podman-pushed zstd:chunked image lazily from the store, with the gzip image's files" {
    local want=$SGZ_WORK/t$BATS_TEST_NUMBER.gzip.view got=$SGZ_WORK/t$BATS_TEST_NUMBER.zstd.view
    gzip_view_p5 "$want"
    local off; off=$(store_log_lines main)
    run podman5 pull -q "$ZP5"
    assert_success
    check_served_p5 "$off" "$ZP5"
    podman5 run --rm "$ZP5" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$got"
    assert_same_view "$want" "$got"
}

@test "podman 4 runs the Podman-pushed zstd:chunked image lazily from the store (by blob digest), with the gzip image's files" {
    local want=$SGZ_WORK/t$BATS_TEST_NUMBER.gzip.view got=$SGZ_WORK/t$BATS_TEST_NUMBER.zstd.view
    podman4_plain pull -q "$GZ" >/dev/null
    podman4_plain run --rm "$GZ" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$want"
    local off; off=$(store_log_lines main)
    run podman4 pull -q "$ZP5"
    assert_success
    local d uses
    uses=$(store_events main "$off" use)
    for d in $(layer_digests "$ZP5"); do
        has_event "$uses" '.digest == $d' --arg d "$d" || fail "no 'use' of layer $d in the store log"
    done
    podman4 run --rm "$ZP5" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$got"
    assert_same_view "$want" "$got"
}

@test "the store's info says compression 4 (zstd) for a zstd:chunked layer under both names" {
    podman5 pull -q "$ZP5" >/dev/null
    local b64 d t
    b64=$(printf '%s' "$ZP5" | base64 -w0)
    d=$(layer_digests "$ZP5" | head -1)
    t=$(zstd_toc_digests "$ZP5" | head -1)
    run jq -r '.compression' "$P5_HOSTDIR/mnt/main/$b64/$t/info"
    assert_success
    [ "$output" = 4 ] || fail "info by manifest-checksum: compression $output"
    run jq -r '.compression, ."toc-digest"' "$P5_HOSTDIR/mnt/main/$b64/$t/info"
    [ "${lines[1]}" = "$t" ] || fail "info toc-digest ${lines[1]}, want $t"
    run jq -r '.compression' "$P5_HOSTDIR/mnt/main/$b64/$d/info"
    assert_success
    [ "$output" = 4 ] || fail "info by blob digest: compression $output"
}

@test "podman 5's own partial pull accepts stargz-store's zstd:chunked output, with the gzip image's files" {
    local want=$SGZ_WORK/t$BATS_TEST_NUMBER.gzip.view got=$SGZ_WORK/t$BATS_TEST_NUMBER.ours.view
    gzip_view_p5 "$want"
    p5_partial_instance partial
    local off; off=$(reg_log_lines main)
    run _p5 partial pull "$ZOURS"
    assert_success
    local ranges; ranges=$(reg_blob_requests main "$off" fixtures/busybox 206)
    log "range (206) blob requests during the partial pull: $ranges"
    [ "$ranges" -gt 0 ] || fail "podman 5 did not pull partially (no range requests); pull output: $output"
    _p5 partial run --rm "$ZOURS" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$got"
    # Podman 5.4's partial pull leaves directories and symlinks with the time of the pull (its own
    # zstd:chunked pushes show the same), so their mtimes are not compared.
    no_dir_link_mtimes "$want"
    no_dir_link_mtimes "$got"
    assert_same_view "$want" "$got"
}

@test "a plain podman 4 pull of stargz-store's zstd:chunked output runs with the gzip image's files" {
    local want=$SGZ_WORK/t$BATS_TEST_NUMBER.gzip.view got=$SGZ_WORK/t$BATS_TEST_NUMBER.ours.view
    podman4_plain pull -q "$GZ" >/dev/null
    podman4_plain run --rm "$GZ" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$want"
    run podman4_plain pull -q "$ZOURS"
    assert_success
    podman4_plain run --rm "$ZOURS" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$got"
    assert_same_view "$want" "$got"
}

@test "stargz-store's zstd:chunked output is served lazily by the store to podman 5 and podman 4" {
    local off; off=$(store_log_lines main)
    run podman5 pull -q "$ZOURS"
    assert_success
    check_served_p5 "$off" "$ZOURS"
    run podman5 run --rm "$ZOURS" /bin/cat /data/small/hello.txt
    assert_success
    [ "$output" = "hello from the stargz-store e2e fixture" ]
    off=$(store_log_lines main)
    run podman4 pull -q "$ZOURS"
    assert_success
    run store_events main "$off" "layer not served lazily"
    [ -z "$output" ] || fail "store fell back for podman 4: $output"
    run podman4 run --rm "$ZOURS" /bin/sh -c 'wc -c < /data/medium/text-1.5m.txt'
    assert_success
    [ "$output" = 1572864 ]
}

@test "a cold podman 5 run fetches far fewer bytes than the image from eStargz, our zstd:chunked and Podman's zstd:chunked" {
    local cmd='cat /data/small/hello.txt /data/deep/a/b/c/d/e/leaf.txt; wc -c < /data/medium/text-1.5m.txt'
    local tag ref got size
    for tag in esgz zstd-ours zstd-podman; do
        ref=$REG/fixtures/busybox:$tag
        got=$(cold_run_bytes "$tag" "$ref" "$cmd")
        size=$(image_size "$ref")
        log "cold run $tag: $got blob bytes fetched of $size (compressed image size)"
        echo "$tag $got $size" >> "${SGZ_ZSTD_BYTES_OUT:-/dev/null}"
        [ "$got" -gt 0 ] || fail "$tag: no blob bytes fetched at all: is the registry log right?"
        [ $((got * 3)) -lt "$size" ] || fail "$tag: fetched $got bytes, not far below the image size $size"
    done
}
