#!/usr/bin/env bats
# Registry faults: Podman 4 runs an eStargz image lazily through tests/faultproxy, a proxy in front of
# the registry that injects errors, resets, truncated and stalled bodies, whole-blob and malformed
# multi-range answers, and cuts (refused connections or a blackhole) for a while or for good.  Reads
# get the right bytes after transient faults and short cuts, and fail with EIO within
# store.read_timeout on a permanent cut; the store keeps running and serves again afterwards.
#
# Each test starts its own store (an empty cache), so that its container's reads go to the registry.
# Prefetch and background fetch are off for the same reason.

load helpers
bats_require_minimum_version 1.5.0

# What every container here runs: the sha256 of every regular file of the fixture, sorted.
SUMS='find /bin /data /home /usr -type f -exec sha256sum {} + | sort'

setup_file() {
    binary_or_skip_file || return 0
    esgz_fixture main busybox GZ ESGZ_DIRECT
    start_faultproxy "$REG"
    export PX CTL
    export ESGZ=$PX/fixtures/busybox:esgz
}

teardown_file() {
    [ -n "${SGZ_WORK:-}" ] && _sgz_stop_pidfile "$SGZ_WORK/faultproxy/pid" faultproxy
    sgz_teardown_work
}

setup() {
    sgz_test_setup
    p4_instance plain
}

teardown() {
    # the proxy passes everything again for the next test, whatever this one left
    [ -n "${CTL:-}" ] && { px restore >/dev/null 2>&1; px clear >/dev/null 2>&1; }
    if [ -z "${BATS_TEST_COMPLETED:-}" ] && [ -f "${SGZ_WORK:-}/faultproxy/log" ]; then
        echo "# --- last lines of the fault proxy's log"; tail -n 15 "$SGZ_WORK/faultproxy/log" | sed 's/^/#   /'
    fi
    sgz_test_teardown
}

# start_faultproxy BACKEND: build tests/faultproxy (or use SGZ_FAULTPROXY_BIN), run it in front of
# BACKEND, set PX (proxy host:port) and CTL (control host:port), and add PX to registries.conf as
# insecure (plain HTTP).
start_faultproxy() {
    local d=$SGZ_WORK/faultproxy bin=${SGZ_FAULTPROXY_BIN:-} go
    mkdir -p "$d"
    if [ -z "$bin" ]; then
        go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
        bin=$d/faultproxy
        (cd "$SGZ_REPO" && "$go" build -o "$bin" ./tests/faultproxy) >&2 || fail "building tests/faultproxy failed"
    fi
    (exec "$bin" -backend "http://$1" -listen 127.0.0.1:0 -control 127.0.0.1:0 -addr-file "$d/addr" \
        </dev/null >>"$d/log" 2>&1 3>&- & echo $! > "$d/pid")
    wait_until 20 test -s "$d/addr" || { cat "$d/log" >&2; fail "faultproxy did not start"; }
    read -r PX CTL < "$d/addr"
    printf '[[registry]]\nlocation = "%s"\ninsecure = true\n\n' "$PX" >> "$SGZ_REGISTRIES_CONF"
}

# px PATH: POST to the proxy's control API (fault?..., clear, cut?..., restore); prints its stats.
px() { curl -fsS -X POST "http://$CTL/$1"; }

# px_stat FIELD: one field of the proxy's stats.
px_stat() { curl -fsS "http://$CTL/stats" | jq -r ".$1"; }

# fault_store NAME [TOML lines...]: a store with an empty cache, prefetch and background fetch off
# (and the given settings), wired to this test's podman 4 instance "store", which pulls $ESGZ.
fault_store() {
    local name=$1; shift
    mkdir -p "$SGZ_WORK/store-$name"
    printf '[store]\nprefetch = false\nbackground_fetch = false\n' > "$SGZ_WORK/store-$name/config.toml"
    printf '%s\n' "$@" >> "$SGZ_WORK/store-$name/config.toml"
    start_store "$name" "$SGZ_WORK/mnt/$name"
    p4_instance store "$(store_mnt "$name")"
    run podman4 pull -q "$ESGZ"
    assert_success
}

# want_sums: the file sums of the gzip image pulled normally (computed once per file).
want_sums() {
    local f=$SGZ_WORK/want.sums
    if [ ! -s "$f" ]; then
        podman4_plain pull -q "$GZ" >/dev/null || fail "pull $GZ failed"
        podman4_plain run --rm "$GZ" /bin/sh -c "$SUMS" > "$f.tmp" || fail "sums of $GZ failed"
        [ "$(wc -l < "$f.tmp")" -gt 5 ] || fail "too few files in $f.tmp"
        mv "$f.tmp" "$f"
    fi
    echo "$f"
}

# check_sums FILE: FILE (container output) holds exactly the sums of the gzip image.
check_sums() {
    local want; want=$(want_sums) || return 1
    diff -u "$want" "$1" > "$1.diff" || { head -20 "$1.diff"; fail "sums through the store differ"; }
}

@test "every file reads right while the registry answers some range requests with errors, resets, cut, stalled, whole-blob and malformed multi-range answers" {
    want_sums >/dev/null
    fault_store mix 'fetch_timeout = "2s"' 'read_timeout = "20s"'
    local faults=(
        'mode=status&status=503&every=2' 'mode=reset&every=3' 'mode=truncate&after=4096&every=2'
        'mode=stall&after=4096&every=3' 'mode=ignore-range&every=4' 'mode=bad-multi&multi=dup-hole'
        'mode=status&status=429&every=2' 'mode=reset&after=65536&every=2'
    )
    # switch faults every 0.5 s while the container reads (a subshell this test owns)
    ( while :; do for q in "${faults[@]}"; do px "fault?$q" >/dev/null || exit 0; sleep 0.5; done; done ) &
    local loop=$!
    local out=$SGZ_WORK/t$BATS_TEST_NUMBER/mix.sums
    run --separate-stderr podman4 run --rm "$ESGZ" /bin/sh -c "$SUMS"
    kill "$loop" 2>/dev/null; wait "$loop" 2>/dev/null || true
    px clear >/dev/null
    assert_success
    printf '%s\n' "$output" > "$out"
    check_sums "$out"
    local injected; injected=$(px_stat injected)
    log "faults injected: $injected of $(px_stat ranges) range requests"
    [ "$injected" -ge 3 ] || fail "only $injected faults injected: the reads did not meet them"
    pid_is "$(store_pid mix)" stargz-store || fail "the store died"
}

# read_across_cut KIND SECONDS: with a fresh store, start a container that waits for a go signal,
# cut the registry (KIND) for SECONDS, give the signal: the container must wait for the registry and
# then read every file right.
read_across_cut() {
    local kind=$1 secs=$2 name=cut$1$2
    local t=$SGZ_WORK/t$BATS_TEST_NUMBER sig=$SGZ_WORK/t$BATS_TEST_NUMBER/sig
    want_sums >/dev/null
    fault_store "$name"
    mkdir -p "$sig"
    local off; off=$(store_log_lines "$name")
    podman4 run --rm -v "$sig:/sig" "$ESGZ" /bin/sh -c \
        "touch /sig/ready; until [ -e /sig/go ]; do sleep 0.1; done; $SUMS" > "$t/cut.sums" 2> "$t/cut.err" &
    local pid=$!
    wait_until 60 test -e "$sig/ready" || fail "the container did not start"
    px "cut?kind=$kind&seconds=$secs" >/dev/null
    local start=$SECONDS
    touch "$sig/go"
    wait "$pid" || { cat "$t/cut.err"; fail "the container failed across a $secs s $kind cut"; }
    local took=$((SECONDS - start))
    check_sums "$t/cut.sums"
    log "$kind cut of $secs s: the container read every file right in $took s"
    [ "$took" -ge $((secs - 1)) ] || fail "done in $took s: the reads did not wait for the $secs s cut"
    # Refused connections fail at once and are retried; a blackhole holds a request until the cut
    # ends, or until fetch_timeout (10 s) abandons it for a retry.
    if [ "$kind" = refuse ] || [ "$secs" -gt 10 ]; then
        [ -n "$(store_events "$name" "$off" "range request failed")" ] ||
            fail "no failed range request in the store log: the cut was not met"
    fi
    stop_store "$name"
}

@test "reads resume after a 2 s cut (connections refused)" {
    read_across_cut refuse 2
}

@test "reads resume after a 6 s cut (blackhole)" {
    read_across_cut blackhole 6
}

@test "reads resume after a 12 s cut (connections refused)" {
    read_across_cut refuse 12
}

@test "reads resume after a 12 s cut (blackhole)" {
    read_across_cut blackhole 12
}

# eio_within KIND FILE BOUND: in the running container "keep", reading FILE during a permanent KIND
# cut (started unless it runs already) fails with an I/O error within BOUND seconds.
eio_within() {
    local kind=$1 file=$2 bound=$3
    [ "$(px_stat cut)" = "$kind" ] || px "cut?kind=$kind" >/dev/null
    run podman4 exec keep /bin/sh -c "s=\$(date +%s); cat '$file' > /dev/null; echo \"rc=\$? took=\$((\$(date +%s) - s))\""
    log "permanent $kind cut, cat $file: $(echo $output)"
    [[ "$output" == *"rc=1 "* ]] || fail "cat did not fail: $output"
    [[ "$output" == *"I/O error"* || "$output" == *"Input/output error"* ]] || fail "not EIO: $output"
    local took=${output##*took=}
    [ "$took" -le "$bound" ] || fail "the read failed after $took s, want at most $bound s"
}

# read_ok FILE: in the running container "keep", FILE reads.
read_ok() {
    run podman4 exec keep /bin/cat "$1"
    assert_success
}

@test "a permanent cut fails reads with EIO within read_timeout; the store lives on and serves again once the registry is back" {
    want_sums >/dev/null
    # default timeouts: fetch_timeout 10 s, read_timeout 30 s
    fault_store perm
    run podman4 run -d --name keep "$ESGZ" /bin/sleep 1000
    assert_success
    # read_timeout (30 s), then the kernel reads the same pages again (twice for busybox cat, which
    # falls back from sendfile to read): each a 2 s probe; plus podman exec on a loaded machine
    eio_within blackhole /data/medium/text-1.5m.txt 40
    # the outage is known: the next read makes one 2 s attempt (and the kernel's re-reads one each)
    eio_within blackhole /data/deep/a/b/c/d/e/leaf.txt 8
    px restore >/dev/null
    read_ok /data/small/hello.txt # ends the outage
    eio_within refuse /data/big/random-10m.bin 40
    pid_is "$(store_pid perm)" stargz-store || fail "the store died"
    px restore >/dev/null
    run podman4 exec keep /bin/sh -c "$SUMS"
    assert_success
    local out=$SGZ_WORK/t$BATS_TEST_NUMBER/after.sums
    printf '%s\n' "$output" > "$out"
    check_sums "$out"
}
