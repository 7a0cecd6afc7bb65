#!/usr/bin/env bats
# Whiteouts and opaque directories spread over four layers (fixture "layers", see
# fixtures/build-fixtures.sh): the container's view through the store equals the view of the
# unpacked original gzip image.

load helpers

setup_file() {
    binary_or_skip_file || return 0
    esgz_fixture_setup main layers LGZ LESGZ
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

@test "podman 4 sees whiteouts and opaque directories across layers as in the unpacked gzip image" {
    local want=$SGZ_WORK/t$BATS_TEST_NUMBER.gzip.view got=$SGZ_WORK/t$BATS_TEST_NUMBER.esgz.view
    podman4_plain pull -q "$LGZ" >/dev/null
    podman4_plain run --rm "$LGZ" /bin/sh -c "$(list_tree_script)" sh $SGZ_LAYERS_DIRS > "$want"
    podman4 pull -q "$LESGZ" >/dev/null
    podman4 run --rm "$LESGZ" /bin/sh -c "$(list_tree_script)" sh $SGZ_LAYERS_DIRS > "$got"
    assert_same_view "$want" "$got"
}

@test "podman 4 through the store shows exactly the expected /w tree of the four layers" {
    podman4 pull -q "$LESGZ" >/dev/null
    run podman4 run --rm "$LESGZ" /bin/sh -c \
        'find /w | sort | while read -r p; do if [ -d "$p" ] && [ ! -L "$p" ]; then echo "d $p"; else echo "f $p"; fi; done'
    assert_success
    diff -u "$(fixtures_dir)/layers.expected" <(printf '%s\n' "$output" | LC_ALL=C sort -k2)
    run podman4 run --rm "$LESGZ" /bin/cat /w/readd.txt /w/opq/final /w/replace-dir-with-file
    assert_success
    [ "$output" = "$(printf 'v2\nfinal\nnow-a-file')" ]
}

@test "podman 4 through the store hides a top-level directory whited out in a later layer" {
    podman4 pull -q "$LESGZ" >/dev/null
    run podman4 run --rm "$LESGZ" /bin/ls -a /
    assert_success
    [[ "$output" != *gone* ]] || fail "/gone (whited out in layer 2) is visible: $output"
    [[ "$output" == *w* ]]
}

@test "podman 4 through the store shows no whiteout or opaque markers as files" {
    podman4 pull -q "$LESGZ" >/dev/null
    run podman4 run --rm "$LESGZ" /bin/sh -c 'find / -xdev -name ".wh.*"; find /w -type c'
    assert_success
    [ -z "$output" ] || fail "markers visible in the container: $output"
}
