#!/usr/bin/env bats
# stargz-store optimize: record what a workload reads (through our own FUSE layer, under Podman 4)
# and convert with those files prioritized, so that a cold run fetches them in one prefetch.
# The fixture is Debian bookworm minbase + python3-minimal (debootstrap, about 2-3 min the first
# time; the root file system tar is cached under $SGZ_FIXTURE_CACHE).

load helpers

PY_SUITE=bookworm
PY_CACHE_VERSION=1   # bump to rebuild the cached tar

# python3_rootfs_tar: path of the cached root file system tar, built once with debootstrap.
python3_rootfs_tar() {
    local dir=$SGZ_FIXTURE_CACHE/python3-$PY_SUITE-minbase-v$PY_CACHE_VERSION
    if [ ! -f "$dir/.complete" ]; then
        mkdir -p "$SGZ_FIXTURE_CACHE"
        (
            flock 9
            if [ ! -f "$dir/.complete" ]; then
                start=$SECONDS
                rm -rf "$dir" && mkdir -p "$dir"
                debootstrap --variant=minbase --include=python3-minimal "$PY_SUITE" "$dir/rootfs" \
                    http://deb.debian.org/debian > "$dir/debootstrap.log" 2>&1 ||
                    { tail -20 "$dir/debootstrap.log" >&2; exit 1; }
                rm -rf "$dir"/rootfs/var/cache/apt/archives/*.deb "$dir"/rootfs/var/lib/apt/lists/*
                tar --numeric-owner -C "$dir/rootfs" -cf "$dir/rootfs.tar" . && rm -rf "$dir/rootfs" || exit 1
                touch "$dir/.complete"
                echo "# python3 fixture built in $((SECONDS - start)) s: $dir" >&2
            fi
        ) 9>"$SGZ_FIXTURE_CACHE/.lock-python3" || fail "building the python3 fixture failed"
    fi
    echo "$dir/rootfs.tar"
}

# optimize ARGS...: stargz-store optimize with this file's registries.conf, no credentials, and a
# work directory under $SGZ_WORK (so the tests can check that it is left empty).
optimize() {
    mkdir -p "$SGZ_WORK/optwork"
    env CONTAINERS_REGISTRIES_CONF="$SGZ_REGISTRIES_CONF" REGISTRY_AUTH_FILE="$SGZ_WORK/no-auth.json" \
        timeout "$SGZ_TIMEOUT" "$SGZ_BIN" optimize --plain-http --work-dir "$SGZ_WORK/optwork" "$@"
}

# blob_gets NAME OFFSET REPO DIGEST...: "status bytes" of every blob GET of the given layers after
# line OFFSET of registry NAME's log, one per line.
blob_gets() {
    local name=$1 off=$2 repo=$3; shift 3
    local digests
    digests=$(printf '%s\n' "$@" | jq -R . | jq -s .)
    tail -n +"$((off + 1))" "$(reg_log "$name")" | jq -rR --arg repo "$repo" --argjson ds "$digests" '
        fromjson? | select(.msg == "response completed" and .["http.request.method"] == "GET")
        | (.["http.request.uri"] | capture("^/v2/(?<r>.+)/blobs/(?<d>sha256:[0-9a-f]+)")) as $m
        | select($m.r == $repo and ($ds | index($m.d)) != null)
        | "\(.["http.response.status"]) \(.["http.response.written"])"'
}

# no_background_store NAME: a fresh store without background fetch, so that every blob request of
# a run is the footer, the TOC, the prefetch or an on-demand fetch.
no_background_store() {
    mkdir -p "$SGZ_WORK/store-$1"
    printf '[store]\nbackground_fetch = false\n%b' "${2:-}" > "$SGZ_WORK/store-$1/config.toml"
    start_store "$1" "$SGZ_WORK/mnt/$1"
}

setup_file() {
    binary_or_skip_file || return 0
    require_store_binary
    require_tools podman runc docker-registry skopeo jq curl ss debootstrap flock
    sgz_setup_work
    start_registry main
    export REG=$(reg_addr main)
    export PY=$REG/py/python3:gzip PYOPT=$REG/py/python3:opt PYESGZ=$REG/py/python3:esgz
    local tarball
    tarball=$(python3_rootfs_tar) || return 1
    p4_instance build
    _p4 build import -q --change 'CMD ["/usr/bin/python3"]' "$tarball" localhost/py/python3:latest >/dev/null ||
        fail "podman import of the python3 fixture failed"
    _p4 build push -q --tls-verify=false localhost/py/python3:latest "docker://$PY" || fail "podman push $PY failed"
    p4_cleanup
    # The recording run every test looks at (about 20 s: two conversions and one podman run).
    optimize "$PY" "$PYOPT" -- python3 -c 'print(1)' > "$SGZ_WORK/optimize.out" 2> "$SGZ_WORK/optimize.err" ||
        { tail -20 "$SGZ_WORK/optimize.err" >&2; fail "stargz-store optimize $PY failed"; }
    convert "$PY" "$PYESGZ"
}

teardown_file() {
    sgz_teardown_work
}

setup() {
    sgz_test_setup
}

teardown() {
    sgz_test_teardown
}

@test "optimize records the python3 interpreter and its shared libraries, in first-access order" {
    local out=$SGZ_WORK/optimize.out
    grep -q 'prioritized [0-9]* files' "$out" || fail "no summary in: $(cat "$out")"
    local interp libc loader
    interp=$(grep -n ' /usr/bin/python3\.[0-9]*$' "$out" | cut -d: -f1)
    loader=$(grep -n ' /usr/lib/x86_64-linux-gnu/ld-linux-x86-64\.so\.2$' "$out" | cut -d: -f1)
    libc=$(grep -n ' /usr/lib/x86_64-linux-gnu/libc\.so\.6$' "$out" | cut -d: -f1)
    [ -n "$interp" ] && [ -n "$loader" ] && [ -n "$libc" ] || fail "interpreter, loader or libc missing: $(cat "$out")"
    # execve opens the interpreter, then the loader, then the libraries
    [ "$interp" -lt "$loader" ] && [ "$loader" -lt "$libc" ] || fail "unexpected order: $(cat "$out")"
    # each file once; no directories or symbolic links (python3 is a symlink to python3.11)
    [ -z "$(grep '^ *[0-9]* /' "$out" | sort | uniq -d)" ]
    ! grep -q ' /usr/bin/python3$' "$out"
    log "$(grep '^prioritized' "$out")"
}

@test "optimize prints the pushed manifest digest last, and DST is eStargz" {
    local last want
    last=$(tail -1 "$SGZ_WORK/optimize.out")
    want=$(manifest "$PYOPT" | sha256sum | cut -d' ' -f1)
    [ "$last" = "sha256:$want" ] || fail "last line $last, manifest digest sha256:$want"
    check_estargz "$PYOPT"
}

@test "a cold podman run of the optimized image prefetches in one range request per layer and fetches little on demand" {
    no_background_store opt
    p4_instance store "$(store_mnt opt)"
    local off soff; off=$(reg_log_lines main); soff=$(store_log_lines opt)
    run podman4 run --rm "$PYOPT" python3 -c 'print(1)'
    assert_success
    [ "${lines[-1]}" = 1 ]
    local layers n gets big
    layers=$(layer_digests "$PYOPT" | wc -l)
    gets=$(blob_gets main "$off" py/python3 $(layer_digests "$PYOPT"))
    n=$(grep -c . <<<"$gets")
    # the prefetch: one request of the whole region per layer (it is at least the interpreter's size)
    big=$(awk '$2 > 1000000' <<<"$gets" | wc -l)
    log "optimized: $n blob requests for $layers layer(s), $(awk '{s += $2} END {print s}' <<<"$gets") bytes: $(echo $gets)"
    [ "$big" -eq "$layers" ] || fail "want $layers big (prefetch) request(s), got $big: $gets"
    has_event "$(store_events opt "$soff" 'layer prefetched')" '.bytes > 1000000' || fail "no 'layer prefetched' event"
    # footer + TOC + prefetch per layer, and at most a few chunks on demand
    [ "$n" -le $((3 * layers + 3)) ] || fail "$n blob requests, want at most $((3 * layers + 3))"
}

# cold_unoptimized_run NAME: a cold podman 4 run of the unoptimized image through store NAME;
# sets gets (the blob requests) and n (their count).
cold_unoptimized_run() {
    p4_instance store "$(store_mnt "$1")"
    local off; off=$(reg_log_lines main)
    run podman4 run --rm "$PYESGZ" python3 -c 'print(1)'
    assert_success
    [ "${lines[-1]}" = 1 ]
    gets=$(blob_gets main "$off" py/python3 $(layer_digests "$PYESGZ"))
    n=$(grep -c . <<<"$gets")
    log "unoptimized, store $1: $n blob requests, $(awk '{s += $2} END {print s}' <<<"$gets") bytes"
}

@test "without speculation, the same cold run of the unoptimized eStargz image needs many more on-demand requests" {
    no_background_store plain 'speculate = false\n'
    local gets n layers
    layers=$(layer_digests "$PYESGZ" | wc -l)
    cold_unoptimized_run plain
    [ "$n" -gt $((3 * layers + 3)) ] || fail "only $n requests: the comparison says nothing"
    echo "$n" > "$SGZ_WORK/plain-requests"
}

@test "with speculation (the default) the unoptimized image's cold run needs fewer requests, and few bytes" {
    [ -s "$SGZ_WORK/plain-requests" ] || fail "the run without speculation did not run"
    no_background_store guess
    local gets n plain size bytes
    plain=$(cat "$SGZ_WORK/plain-requests")
    cold_unoptimized_run guess
    [ "$n" -lt "$plain" ] || fail "$n requests with speculation, $plain without"
    # start-up files, the default command and ELF libraries, each one request; not the image
    has_event "$(store_events guess 0 'speculative fetch')" '.why == "ELF dependencies"' || fail "no ELF speculation logged"
    bytes=$(awk '{s += $2} END {print s}' <<<"$gets")
    size=$(image_size "$PYESGZ")
    [ "$bytes" -lt $((size / 8)) ] || fail "fetched $bytes of $size bytes"
}

@test "optimize leaves no mount, work file, container or run root behind" {
    [ -z "$(ls -A "$SGZ_WORK/optwork")" ] || fail "left in the work dir: $(ls -A "$SGZ_WORK/optwork")"
    ! grep -q "$SGZ_WORK/optwork" /proc/self/mountinfo
    ! grep -q "stargz-optimize" /proc/self/mountinfo
    ! pgrep -f "$SGZ_WORK/optwork" >/dev/null   # conmon and podman name paths below it
}

@test "optimize --wait-for-output stops the workload as soon as a line matches" {
    local start=$SECONDS
    run optimize --period 120s --wait-for-output '^ready [0-9]+$' "$PY" "$REG/py/python3:ready" -- \
        python3 -c 'import time; print("ready", 42, flush=True); time.sleep(300)'
    assert_success
    grep -q 'matched --wait-for-output' <<<"$output" || fail "no match reported: $output"
    [ $((SECONDS - start)) -lt 100 ] || fail "took $((SECONDS - start)) s: the period ran out instead"
    [ -z "$(ls -A "$SGZ_WORK/optwork")" ]
}

@test "optimize --period stops a workload that does not exit and still records what it read" {
    run optimize --period 2s "$PY" "$REG/py/python3:period" -- python3 -c 'import time; time.sleep(300)'
    assert_success
    grep -q -- '--period elapsed' <<<"$output" || fail "no timeout reported: $output"
    grep -q ' /usr/bin/python3\.[0-9]*$' <<<"$output" || fail "interpreter not recorded: $output"
    [ -z "$(ls -A "$SGZ_WORK/optwork")" ]
}

@test "optimize without '--' before the command is a usage error and touches nothing" {
    run optimize "$PY" "$REG/py/python3:bad" python3
    assert_failure
    grep -q 'want SRC DST \[-- CMD' <<<"$output"
    [ -z "$(ls -A "$SGZ_WORK/optwork")" ]
}
