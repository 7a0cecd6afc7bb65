#!/usr/bin/env bats
# The harness on its own, without the product binary: registry, fixtures, both podmans, cleanup.
# If these fail, the other files' failures say nothing about stargz-store.

load helpers

setup_file() {
    require_tools podman runc docker-registry skopeo jq curl ss htpasswd debootstrap flock
    sgz_setup_work
    p5_setup_file
    start_registry main
    p5_sync_registries
    export REG=$(reg_addr main)
    push_fixture busybox "$REG/fixtures/busybox:gzip"
    push_fixture layers "$REG/fixtures/layers:gzip"
}

teardown_file() {
    sgz_teardown_work
    p5_teardown_file
}

setup() {
    p4_instance plain
    p5_instance plain
}

teardown() {
    sgz_test_teardown
}

@test "fixtures are pushed as plain gzip images without TOC annotations" {
    run manifest "$REG/fixtures/busybox:gzip"
    assert_success
    [ "$(jq -r '.layers[0].mediaType' <<<"$output")" = application/vnd.oci.image.layer.v1.tar+gzip ]
    [ -z "$(toc_digests "$REG/fixtures/busybox:gzip")" ]
    [ "$(layer_digests "$REG/fixtures/layers:gzip" | wc -l)" -eq 4 ]
    # the random 10 MiB file makes the image big enough for the lazy-pull byte count to mean something
    [ "$(image_size "$REG/fixtures/busybox:gzip")" -gt 10000000 ]
}

@test "podman 4 without the store runs the gzip fixture and sees its modes, owners and links" {
    local v=$SGZ_WORK/plain.view
    podman4_plain pull -q "$REG/fixtures/busybox:gzip" >/dev/null
    podman4_plain run --rm "$REG/fixtures/busybox:gzip" /bin/sh -c "$(list_tree_script)" sh $SGZ_BUSYBOX_DIRS > "$v"
    [ "$(wc -l < "$v")" -gt 300 ]
    grep -qx '/data/modes/setuid-file|file|4755 0 0 1700000000|.*' "$v"
    grep -qx '/data/small/owned-123-456|file|600 123 456 1700000000|.*' "$v"
    grep -qx '/data/links/symlink-relative|symlink|777 0 0 1700000000|../small/hello.txt' "$v"
    grep -qx '/data/small/hello.txt|file|644 0 0 1700000000|40 2 [0-9a-f]* =/data/links/hardlink-to-hello' "$v"
    grep -qx '/home/user|directory|750 1000 1000 1700000000|' "$v"
}

@test "podman 4 without the store shows the expected whiteout and opaque-directory view" {
    podman4_plain pull -q "$REG/fixtures/layers:gzip" >/dev/null
    run podman4_plain run --rm "$REG/fixtures/layers:gzip" /bin/sh -c \
        'find /w | sort | while read -r p; do if [ -d "$p" ] && [ ! -L "$p" ]; then echo "d $p"; else echo "f $p"; fi; done'
    assert_success
    diff -u "$(fixtures_dir)/layers.expected" <(printf '%s\n' "$output" | LC_ALL=C sort -k2)
    run podman4_plain run --rm "$REG/fixtures/layers:gzip" /bin/sh -c 'ls -a /; cat /w/readd.txt /w/opq/final'
    assert_success
    [[ "$output" != *gone* ]]
    [[ "$output" == *v2*final* ]]
}

@test "podman 5 in the chroot runs the gzip fixture" {
    p5_instance plain
    run podman5_plain --version
    assert_success
    [[ "$output" == "podman version 5."* ]]
    run podman5_plain pull -q "$REG/fixtures/busybox:gzip"
    assert_success
    run podman5_plain run --rm "$REG/fixtures/busybox:gzip" /bin/sh -c 'cat /data/small/hello.txt; stat -c %a /data/modes/setuid-file'
    assert_success
    [ "${lines[0]}" = "hello from the stargz-store e2e fixture" ]
    [ "${lines[1]}" = 4755 ]
}

@test "the podman 4 and podman 5 wrappers hand additionallayerstores to storage" {
    mkdir -p "$SGZ_WORK/als-dummy" "$P5_HOSTDIR/als-dummy"
    p4_instance store "$SGZ_WORK/als-dummy"
    p5_instance store "$P5_DIR/als-dummy"
    run podman4 info --format '{{json .Store.GraphOptions}}'
    assert_success
    [[ "$output" == *"$SGZ_WORK/als-dummy:ref"* ]] || fail "podman 4 storage options: $output"
    run podman5 info --format '{{json .Store.GraphOptions}}'
    assert_success
    [[ "$output" == *"$P5_DIR/als-dummy:ref"* ]] || fail "podman 5 storage options: $output"
}

@test "a registry with htpasswd refuses anonymous pulls and accepts the credentials" {
    start_registry auth sgzuser sgzpass
    local a=$(reg_addr auth)
    push_fixture busybox "$a/fixtures/busybox:gzip" --dest-creds sgzuser:sgzpass
    run podman4_plain pull -q "$a/fixtures/busybox:gzip"
    assert_failure
    echo "$output"; [[ "$output" == *"authentication required"* || "$output" == *unauthorized* ]]
    printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$a" "$(printf sgzuser:sgzpass | base64 -w0)" > "$SGZ_WORK/auth.json"
    run podman4_plain pull -q --authfile "$SGZ_WORK/auth.json" "$a/fixtures/busybox:gzip"
    assert_success
}
