#!/usr/bin/env bats
# Hostile images (tests/hostile crafts them): lazy layers whose table of contents lies about sizes,
# offsets, owners, landmarks, links and entry counts, or that are valid but large.  The store must
# refuse each lying layer (the lookup answers ENOENT, and Podman pulls the layer normally) or serve it
# in bounded time and memory, stay up, and keep serving a good image afterwards.

load helpers

# Peak memory (VmHWM) the store may reach while it refuses or serves the small hostile layers.  The
# largest costs are parsing the 12 MiB TOC of esgz-many-entries up to the entry limit (150 MiB
# measured) and serving the good image at the end (215 MiB measured, memory cache included).
HOSTILE_HWM_KIB=$((320 * 1024))
# Peak memory the store may add while it prefetches (and then serves) the 128 MiB region of
# esgz-big-prefetch, with a fresh store whose fetch budget is 32 MiB (the prefetch may hold half of it)
# and whose memory cache is 16 MiB: about 40 MiB live at most, which Go's collector (GOGC=100) lets
# reach about twice that in RSS (80 MiB measured).  Holding the region whole added 340 MiB.
PREFETCH_HWM_KIB=$((96 * 1024))

setup_file() {
    binary_or_skip_file || return 0
    require_tools go
    esgz_fixture main busybox GZ ESGZ
    export HOSTILE=$SGZ_WORK/hostile-oci
    (cd "$SGZ_REPO" && go build -o "$SGZ_WORK/hostile" ./tests/hostile) || fail "building tests/hostile failed"
    "$SGZ_WORK/hostile" -base "$(fixtures_dir)/busybox" -out "$HOSTILE" 2>"$SGZ_WORK/hostile.log" ||
        { cat "$SGZ_WORK/hostile.log" >&2; fail "tests/hostile failed"; }
    local c
    for c in $(jq -r '.[].name' "$HOSTILE/cases.json"); do
        timeout "$SGZ_TIMEOUT" skopeo copy -q --preserve-digests --dest-tls-verify=false \
            "oci:$HOSTILE:$c" "docker://$REG/hostile:$c" >&2 || fail "pushing hostile image $c failed"
    done
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

# case_field CASE FIELD: a field of the case in cases.json.
case_field() { jq -r --arg c "$1" --arg f "$2" '.[] | select(.name == $c) | .[$f] // empty' "$HOSTILE/cases.json"; }

# hostile_layer_dir STORE CASE [toc]: the ALS directory of the hostile (last) layer of image CASE in
# STORE's mount, named by blob digest (Gen A, Podman 4) or, with "toc", by TOC digest (Gen B).
hostile_layer_dir() {
    local ref=$REG/hostile:$2 d
    if [ "${3:-}" = toc ]; then
        d=$(manifest "$ref" | jq -r '.layers[-1].annotations | .["containerd.io/snapshot/stargz/toc.digest"] // .["io.github.containers.zstd-chunked.manifest-checksum"]')
    else
        d=$(manifest "$ref" | jq -r '.layers[-1].digest')
    fi
    echo "$(store_mnt "$1")/$(printf %s "$ref" | base64 -w0)/$d"
}

# store_kib STORE FIELD: VmHWM or VmRSS of the store, in KiB.
store_kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$(store_pid "$1")/status"; }

# store_cpu_ticks STORE: user plus system CPU time of the store, in clock ticks.
store_cpu_ticks() { sed 's/^.*) //' "/proc/$(store_pid "$1")/stat" | awk '{print $12 + $13}'; }

# assert_store_up STORE MAX-HWM-KIB: the store runs, still mounts, and its peak memory is below the bound.
assert_store_up() {
    pid_is "$(store_pid "$1")" stargz-store || fail "store $1 died: $(tail -5 "$(store_log "$1")")"
    mountpoint -q "$(store_mnt "$1")" || fail "store $1 lost its mount"
    local hwm; hwm=$(store_kib "$1" VmHWM)
    log "store $1: VmHWM $hwm KiB, VmRSS $(store_kib "$1" VmRSS) KiB"
    [ "$hwm" -lt "$2" ] || fail "store $1 peaked at $hwm KiB, over the bound of $2 KiB"
}

# check_refused CASE: both names of the hostile layer answer ENOENT, promptly, with the reason logged.
check_refused() {
    local c=$1 off dir kind
    [ "$(case_field "$c" expect)" = refused ] || fail "case $c is not one the store must refuse"
    off=$(store_log_lines main)
    for kind in blob toc; do
        dir=$(hostile_layer_dir main "$c" "$kind")
        run timeout 60 stat "$dir/diff"
        assert_failure
        [[ "$output" == *"No such file or directory"* ]] || fail "lookup of $c by $kind digest: $output"
    done
    local d; d=$(manifest "$REG/hostile:$c" | jq -r '.layers[-1].digest')
    has_event "$(store_events main "$off" "layer not served lazily")" '.digest == $d' --arg d "$d" ||
        fail "no 'layer not served lazily' for $c ($(case_field "$c" why))"
    assert_store_up main "$HOSTILE_HWM_KIB"
}

@test "esgz-huge-chunk: a file declaring a 1 TiB chunk is refused (ENOENT), the store stays up" {
    check_refused esgz-huge-chunk
}

@test "esgz-uid: an owner of 2^32 is refused" {
    check_refused esgz-uid
}

@test "esgz-many-entries: implicit directories past the entry limit are refused" {
    check_refused esgz-many-entries
}

@test "esgz-huge-span: a compressed range of 128 MiB for a small file is refused" {
    check_refused esgz-huge-span
}

@test "zstd-end-offset: a zstd:chunked end offset far past the blob is refused" {
    check_refused zstd-end-offset
}

@test "zstd-uid: a zstd:chunked owner of 2^32 is refused" {
    check_refused zstd-uid
}

@test "zstd-huge-chunk: a zstd:chunked file declaring a 1 TiB chunk is refused" {
    check_refused zstd-huge-chunk
}

@test "podman 4 pulls refused hostile images normally and runs them with their real content" {
    local c
    for c in esgz-huge-chunk esgz-uid zstd-end-offset; do
        run podman4 pull -q "$REG/hostile:$c"
        assert_success
        run podman4 run --rm "$REG/hostile:$c" /bin/sh -c 'cat /hostile/hello.txt; stat -c %u /hostile/hello.txt'
        assert_success
        [ "${lines[0]}" = "hello from a hostile image" ] || fail "$c: $output"
        [ "${lines[1]}" = 0 ] || fail "$c: owner ${lines[1]}"
    done
    assert_store_up main "$HOSTILE_HWM_KIB"
}

@test "esgz-link-chain: 40,000 chained hard links are indexed in bounded CPU time and served lazily" {
    local dir t0 t1 ticks start
    dir=$(hostile_layer_dir main esgz-link-chain)
    t0=$(store_cpu_ticks main); start=$SECONDS
    run timeout 60 stat -c %h "$dir/diff/hostile/f0"
    assert_success
    t1=$(store_cpu_ticks main)
    ticks=$(getconf CLK_TCK)
    log "lookup took $((SECONDS - start)) s wall, $(((t1 - t0) * 1000 / ticks)) ms of store CPU"
    [ "$output" = "$(case_field esgz-link-chain links)" ] || fail "f0 has $output links"
    [ $((t1 - t0)) -lt $((5 * ticks)) ] || fail "indexing took $(((t1 - t0) / ticks)) s of CPU"
    run sha256sum "$dir/diff/hostile/l40000"
    assert_success
    [ "${output%% *}" = "$(case_field esgz-link-chain sha256)" ] || fail "l40000: $output"
    assert_store_up main "$HOSTILE_HWM_KIB"
}

@test "esgz-far-landmark: a landmark beyond the blob is ignored with a warning, the layer stays lazy" {
    local off dir d
    off=$(store_log_lines main)
    dir=$(hostile_layer_dir main esgz-far-landmark)
    run timeout 60 sha256sum "$dir/diff/hostile/hello.txt"
    assert_success
    [ "${output%% *}" = "$(case_field esgz-far-landmark sha256)" ] || fail "hello.txt: $output"
    d=$(manifest "$REG/hostile:esgz-far-landmark" | jq -r '.layers[-1].digest')
    has_event "$(store_events main "$off" "prefetch landmark ignored")" '.digest == $d' --arg d "$d" ||
        fail "no 'prefetch landmark ignored' warning for $d"
    run store_events main "$off" "layer prefetched"
    [ -z "$output" ] || fail "a prefetch ran: $output"
    assert_store_up main "$HOSTILE_HWM_KIB"
}

@test "esgz-big-prefetch: a valid 128 MiB prefetch region is fetched in bounded memory" {
    # a store of its own, so that its peak memory is this layer's alone, with small memory bounds
    mkdir -p "$SGZ_WORK/store-big"
    printf '[store]\nmax_fetch_memory = 33554432\n[cache]\nmemory_size = 16777216\n' > "$SGZ_WORK/store-big/config.toml"
    start_store big "$SGZ_WORK/mnt/big"
    local dir base hwm file
    base=$(store_kib big VmHWM)
    dir=$(hostile_layer_dir big esgz-big-prefetch)
    run timeout 120 stat "$dir/diff"
    assert_success
    wait_until 180 eval '[ -n "$(store_events big 0 "layer prefetched")" ]' ||
        fail "no 'layer prefetched' in the store log"
    file=$(case_field esgz-big-prefetch file)
    run sha256sum "$dir/diff/$file"
    assert_success
    [ "${output%% *}" = "$(case_field esgz-big-prefetch sha256)" ] || fail "$file: $output"
    pid_is "$(store_pid big)" stargz-store || fail "store big died: $(tail -5 "$(store_log big)")"
    hwm=$(store_kib big VmHWM)
    log "store big: VmHWM $hwm KiB (at start $base KiB) for a prefetch of $(case_field esgz-big-prefetch prefetchBytes) bytes"
    [ $((hwm - base)) -lt "$PREFETCH_HWM_KIB" ] ||
        fail "store big: VmHWM grew by $((hwm - base)) KiB during the prefetch, bound $PREFETCH_HWM_KIB KiB"
}

@test "after every hostile image, the same store serves a good eStargz image lazily" {
    local off d uses
    off=$(store_log_lines main)
    run podman4 pull -q "$ESGZ"
    assert_success
    run podman4 run --rm "$ESGZ" /bin/sh -c 'cat /data/small/hello.txt; sha256sum /data/big/random-10m.bin'
    assert_success
    [ "${lines[0]}" = "hello from the stargz-store e2e fixture" ] || fail "$output"
    uses=$(store_events main "$off" use)
    for d in $(layer_digests "$ESGZ"); do
        has_event "$uses" '.digest == $d' --arg d "$d" || fail "no 'use' of layer $d: the store did not serve it"
    done
    assert_store_up main "$HOSTILE_HWM_KIB"
}
