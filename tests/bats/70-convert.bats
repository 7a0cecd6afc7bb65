#!/usr/bin/env bats
# stargz-store convert, end to end: the converted images run on Podman 4 (Gen A) and Podman 5
# (Gen B, in the chroot) with a plain pull and lazily through the store, with an embedded and an
# external TOC; the flags and transports work; failures are clear and leave nothing tagged.

load helpers

setup_file() {
    binary_or_skip_file || return 0
    require_store_binary
    require_tools podman runc docker-registry skopeo jq curl ss debootstrap flock chroot
    sgz_setup_work
    p5_setup_file
    start_registry main
    p5_sync_registries
    export REG=$(reg_addr main)
    export GZ=$REG/fixtures/busybox:gzip
    export ESGZ=$REG/conv/busybox:esgz EXT=$REG/conv/busybox:ext KEEP=$REG/conv/busybox:keep
    push_fixture busybox "$GZ"
    # the first conversion's stdout is checked by a test; keep it
    conv "$GZ" "$ESGZ" > "$SGZ_WORK/esgz.out" || fail "convert $GZ failed"
    conv --external-toc "$GZ" "$EXT" > /dev/null || fail "convert --external-toc failed"
    conv --external-toc --keep-diff-id "$GZ" "$KEEP" > /dev/null || fail "convert --keep-diff-id failed"
    start_store main "$P5_HOSTDIR/mnt/main"
}

teardown_file() {
    sgz_teardown_work
    p5_teardown_file
}

setup() {
    sgz_test_setup
    # one store for both: podman 4 on the host sees its mount point by the host path,
    # podman 5 in the chroot by the chroot path
    p4_instance store "$P5_HOSTDIR/mnt/main"
    p4_instance plain
    p5_instance store "$P5_DIR/mnt/main"
    p5_instance plain
}

teardown() {
    sgz_test_teardown
}

# conv ARGS...: stargz-store convert --plain-http ARGS with this file's registries.conf and no
# credentials; stdout is the command's, stderr goes to convert.log.
conv() {
    echo "== convert $*" >> "$SGZ_WORK/convert.log"
    env CONTAINERS_REGISTRIES_CONF="$SGZ_REGISTRIES_CONF" REGISTRY_AUTH_FILE="$SGZ_WORK/no-auth.json" \
        timeout "$SGZ_TIMEOUT" "$SGZ_BIN" convert --plain-http "$@" 2>> "$SGZ_WORK/convert.log"
}

# manifest_digest REF: the digest the registry reports for REF.
manifest_digest() {
    local host=${1%%/*} rest=${1#*/}
    curl -fsSI -H 'Accept: application/vnd.oci.image.manifest.v1+json' -H 'Accept: application/vnd.oci.image.index.v1+json' \
        "http://$host/v2/${rest%:*}/manifests/${rest##*:}" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest" {print $2}'
}

# tag_exists REF: the registry has REF's tag.
tag_exists() { [ -n "$(manifest_digest "$1" 2>/dev/null)" ]; }

# config_diff_ids REF: REF's config rootfs.diff_ids, one per line.
config_diff_ids() {
    local host=${1%%/*} rest=${1#*/} cfg
    cfg=$(manifest "$1" | jq -r .config.digest)
    curl -fsS "http://$host/v2/${rest%:*}/blobs/$cfg" | jq -r '.rootfs.diff_ids[]'
}

# same_view_p4 IMAGE: the tree podman 4 shows for IMAGE through the store equals the source's
# (plain pull of the gzip image); no layer fell back.
same_view_p4() {
    local img=$1 want=$SGZ_WORK/t$BATS_TEST_NUMBER.want got=$SGZ_WORK/t$BATS_TEST_NUMBER.got off
    podman4_plain pull -q "$GZ" >/dev/null
    podman4_plain run --rm "$GZ" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$want"
    off=$(store_log_lines main)
    podman4 pull -q "$img" >/dev/null || fail "podman 4 pull $img failed"
    podman4 run --rm "$img" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$got"
    [ "$(wc -l < "$want")" -gt 300 ]
    assert_same_view "$want" "$got"
    run store_events main "$off" "layer not served lazily"
    [ -z "$output" ] || fail "store fell back for $img: $output"
    local d uses; uses=$(store_events main "$off" use)
    for d in $(layer_digests "$img"); do
        has_event "$uses" '.digest == $d' --arg d "$d" || fail "no 'use' of layer $d of $img in the store log"
    done
}

same_view_p5() {
    local img=$1 want=$SGZ_WORK/t$BATS_TEST_NUMBER.want got=$SGZ_WORK/t$BATS_TEST_NUMBER.got off
    podman5_plain pull -q "$GZ" >/dev/null
    podman5_plain run --rm "$GZ" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$want"
    off=$(store_log_lines main)
    podman5 pull -q "$img" >/dev/null || fail "podman 5 pull $img failed"
    podman5 run --rm "$img" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$got"
    [ "$(wc -l < "$want")" -gt 300 ]
    assert_same_view "$want" "$got"
    run store_events main "$off" "layer not served lazily"
    [ -z "$output" ] || fail "store fell back for $img: $output"
    local d uses; uses=$(store_events main "$off" use)
    for d in $(toc_digests "$img"); do
        has_event "$uses" '.digest == $d' --arg d "$d" || fail "no 'use' of TOC $d of $img in the store log"
    done
}

@test "convert prints the digest of the manifest it pushed, last, and every layer is eStargz" {
    local last; last=$(tail -n1 "$SGZ_WORK/esgz.out")
    [ "$last" = "$(manifest_digest "$ESGZ")" ] || fail "printed $last, registry has $(manifest_digest "$ESGZ")"
    check_estargz "$ESGZ"
    check_estargz "$EXT"
}

@test "podman 4 runs the converted image with a plain pull (no store) and sees the source's tree" {
    local want=$SGZ_WORK/t$BATS_TEST_NUMBER.want got=$SGZ_WORK/t$BATS_TEST_NUMBER.got
    podman4_plain pull -q "$GZ" >/dev/null
    podman4_plain run --rm "$GZ" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$want"
    for img in "$ESGZ" "$EXT" "$KEEP"; do
        podman4_plain pull -q "$img" >/dev/null || fail "plain pull of $img failed"
        podman4_plain run --rm "$img" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$got"
        assert_same_view "$want" "$got"
    done
}

@test "podman 4 runs the converted image lazily through the store" {
    same_view_p4 "$ESGZ"
}

@test "podman 4 runs the external-TOC image lazily through the store" {
    tag_exists "$EXT-esgztoc" || fail "no TOC image $EXT-esgztoc"
    same_view_p4 "$EXT"
}

@test "podman 4 runs the image converted with --keep-diff-id lazily through the store" {
    same_view_p4 "$KEEP"
}

@test "podman 5 runs the converted and the external-TOC image with a plain pull" {
    local want=$SGZ_WORK/t$BATS_TEST_NUMBER.want got=$SGZ_WORK/t$BATS_TEST_NUMBER.got
    podman5_plain pull -q "$GZ" >/dev/null
    podman5_plain run --rm "$GZ" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$want"
    for img in "$ESGZ" "$EXT"; do
        podman5_plain pull -q "$img" >/dev/null || fail "plain pull of $img failed"
        podman5_plain run --rm "$img" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$got"
        assert_same_view "$want" "$got"
    done
}

@test "podman 5 runs the converted image lazily through the store" {
    same_view_p5 "$ESGZ"
}

@test "podman 5 runs the external-TOC image lazily through the store" {
    same_view_p5 "$EXT"
}

@test "podman 5 runs the image converted with --keep-diff-id lazily through the store" {
    same_view_p5 "$KEEP"
}

@test "--keep-diff-id with --external-toc keeps every DiffID of the source" {
    [ "$(config_diff_ids "$KEEP")" = "$(config_diff_ids "$GZ")" ] || fail "diff_ids changed"
    [ "$(config_diff_ids "$ESGZ")" != "$(config_diff_ids "$GZ")" ]
}

@test "--keep-diff-id without --external-toc is refused, saying why" {
    run conv --keep-diff-id "$GZ" "$REG/conv/refused:v1"
    assert_failure
    grep -q "TOC is a tar entry" "$SGZ_WORK/convert.log" || fail "no reason given: $(tail -3 "$SGZ_WORK/convert.log")"
    ! tag_exists "$REG/conv/refused:v1"
}

@test "converting a converted image again gives the same manifest" {
    run conv "$ESGZ" "$REG/conv/again:v1"
    assert_success
    [ "${lines[-1]}" = "$(manifest_digest "$ESGZ")" ] || fail "second conversion gave ${lines[-1]}"
}

@test "--prioritized-files puts the listed files before the prefetch landmark" {
    printf '%s\n' '# comment' /data/small/hello.txt bin/busybox > "$SGZ_WORK/prio"
    run conv --prioritized-files "$SGZ_WORK/prio" "$GZ" "$REG/conv/prio:v1"
    assert_success
    check_estargz "$REG/conv/prio:v1"
}

@test "convert writes to an OCI layout and reads it back" {
    local dir=$SGZ_WORK/t$BATS_TEST_NUMBER.layout
    run conv --external-toc "$GZ" "oci:$dir:v1"
    assert_success
    jq -e '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "v1-esgztoc")' "$dir/index.json" >/dev/null ||
        fail "no TOC image in the layout"
    run conv "oci:$dir:v1" "$REG/conv/fromlayout:v1"
    assert_success
    check_estargz "$REG/conv/fromlayout:v1"
}

@test "convert reads from and writes to containers-storage through podman" {
    podman4_plain pull -q "$GZ" >/dev/null
    # a podman wrapper with the plain instance's storage
    local d=$SGZ_WORK/t$BATS_TEST_NUMBER/p4-plain rr
    rr=$(cat "$d/runroot")
    cat > "$SGZ_WORK/podman-plain" <<EOF
#!/bin/sh
exec env CONTAINERS_CONF="$d/containers.conf" CONTAINERS_STORAGE_CONF="$d/storage.conf" podman "\$@"
EOF
    chmod +x "$SGZ_WORK/podman-plain"
    run conv --podman "$SGZ_WORK/podman-plain" "containers-storage:$GZ" "containers-storage:localhost/conv/local:esgz"
    assert_success
    run podman4_plain run --rm localhost/conv/local:esgz /bin/cat /data/small/hello.txt
    assert_success
    [ "$output" = "hello from the stargz-store e2e fixture" ]
}

@test "an unreachable source fails clearly and tags nothing" {
    run conv "127.0.0.1:1/nowhere:v1" "$REG/conv/unreachable:v1"
    assert_failure
    grep -q "registry unreachable" "$SGZ_WORK/convert.log" || fail "unclear error: $(tail -3 "$SGZ_WORK/convert.log")"
    ! tag_exists "$REG/conv/unreachable:v1"
}

@test "a full temporary directory fails clearly, tags nothing and leaves no file" {
    local tmp=$SGZ_WORK/t$BATS_TEST_NUMBER.tmp
    mkdir -p "$tmp"
    mount -t tmpfs -o size=256k tmpfs "$tmp"
    run conv --tmp-dir "$tmp" "$GZ" "$REG/conv/full:v1"
    local left; left=$(ls -A "$tmp")
    umount "$tmp"
    assert_failure
    grep -q "no space left on device" "$SGZ_WORK/convert.log" || fail "unclear error: $(tail -3 "$SGZ_WORK/convert.log")"
    ! tag_exists "$REG/conv/full:v1"
    [ -z "$left" ] || fail "temporary files left: $left"
}
