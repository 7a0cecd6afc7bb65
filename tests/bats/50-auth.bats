#!/usr/bin/env bats
# A registry with htpasswd (bcrypt) basic auth: the store reads credentials from REGISTRY_AUTH_FILE,
# podman from --authfile, both the same auth.json.

load helpers

setup_file() {
    binary_or_skip_file || return 0
    require_store_binary
    require_tools podman runc docker-registry skopeo jq curl ss htpasswd
    sgz_setup_work
    start_registry auth sgzuser sgzpass
    export REG=$(reg_addr auth)
    export GZ=$REG/fixtures/busybox:gzip ESGZ=$REG/fixtures/busybox:esgz
    export AUTH=$SGZ_WORK/auth.json
    printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$REG" "$(printf sgzuser:sgzpass | base64 -w0)" > "$AUTH"
    push_fixture busybox "$GZ" --dest-authfile "$AUTH"
    convert "$GZ" "$ESGZ" REGISTRY_AUTH_FILE="$AUTH"
    check_estargz "$ESGZ" -u sgzuser:sgzpass
    start_store main "$SGZ_WORK/mnt/main" REGISTRY_AUTH_FILE="$AUTH"
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

@test "with auth.json credentials podman 4 runs the eStargz image lazily from the htpasswd registry" {
    local off; off=$(store_log_lines main)
    run podman4 pull -q --authfile "$AUTH" "$ESGZ"
    assert_success
    run podman4 run --rm "$ESGZ" /bin/cat /data/small/hello.txt
    assert_success
    [ "$output" = "hello from the stargz-store e2e fixture" ]
    local d uses
    uses=$(store_events main "$off" use)
    for d in $(layer_digests "$ESGZ" -u sgzuser:sgzpass); do
        has_event "$uses" '.digest == $d' --arg d "$d" || fail "no 'use' of layer $d in the store log"
    done
    run store_events main "$off" "layer not served lazily"
    [ -z "$output" ] || fail "store fell back: $output"
}

@test "without credentials podman 4 fails with an authentication error" {
    run podman4 pull -q "$ESGZ"
    assert_failure
    [[ "$output" == *"authentication required"* || "$output" == *unauthorized* ]] ||
        fail "unclear error: $output"
}

@test "a store without credentials says why the layer was not served lazily, and podman still pulls" {
    start_store noauth "$SGZ_WORK/mnt/noauth"
    p4_instance store "$(store_mnt noauth)"
    local off; off=$(store_log_lines noauth)
    run podman4 pull -q --authfile "$AUTH" "$ESGZ"
    assert_success
    # The store logs "layer not served lazily" for layers that cannot be lazy (not eStargz) and
    # "layer cannot be served" when resolving failed; either must carry the authentication error.
    local w
    w=$(store_events noauth "$off" "layer not served lazily"; store_events noauth "$off" "layer cannot be served")
    [ -n "$w" ] || fail "no warning about the layer; log: $(tail -5 "$(store_log noauth)")"
    has_event "$w" '(.err // "") | test("401|[Uu]nauthori[sz]ed|authenticat|credential")' ||
        fail "the warning does not say it is an authentication problem: $w"
}
