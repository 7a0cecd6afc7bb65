# -*- bash -*-
# Helpers for 60-zstdchunked.bats: zstd:chunked fixtures (pushed by Podman 5 itself, or converted by
# stargz-store convert --format zstd:chunked) and the checks on them.  Loaded after helpers.bash.

ZSTD_CHECKSUM=io.github.containers.zstd-chunked.manifest-checksum
ZSTD_POSITION=io.github.containers.zstd-chunked.manifest-position
ZSTD_MEDIA_TYPE=application/vnd.oci.image.layer.v1.tar+zstd

# zstd_toc_digests REF: the manifest-checksum (Gen B name) of every layer of REF, one per line.
zstd_toc_digests() { manifest "$@" | jq -r --arg k "$ZSTD_CHECKSUM" '.layers[].annotations[$k] // empty'; }

# check_zstdchunked REF: every layer of REF is a zstd tar with the zstd:chunked annotations.
check_zstdchunked() {
    local n ok
    n=$(manifest "$1" | jq '.layers | length')
    ok=$(manifest "$1" | jq --arg mt "$ZSTD_MEDIA_TYPE" --arg c "$ZSTD_CHECKSUM" --arg p "$ZSTD_POSITION" \
        '[.layers[] | select(.mediaType == $mt and .annotations[$c] != null and .annotations[$p] != null)] | length')
    [ "$n" -gt 0 ] && [ "$n" = "$ok" ] || fail "$1: $ok of $n layers are zstd:chunked: $(manifest "$1")"
}

# convert_zstd SRC DST: stargz-store convert --format zstd:chunked (log in $SGZ_WORK/convert.log).
convert_zstd() {
    echo "== convert --format zstd:chunked $1 $2" >> "$SGZ_WORK/convert.log"
    env CONTAINERS_REGISTRIES_CONF="$SGZ_REGISTRIES_CONF" REGISTRY_AUTH_FILE="$SGZ_WORK/no-auth.json" \
        timeout "$SGZ_TIMEOUT" "$SGZ_BIN" convert --plain-http --format zstd:chunked "$1" "$2" >> "$SGZ_WORK/convert.log" 2>&1 || {
        tail -20 "$SGZ_WORK/convert.log" >&2; fail "stargz-store convert --format zstd:chunked $1 $2 failed"; }
}

# p5_push_zstd SRC DST: Podman 5 pulls SRC and pushes it to DST as zstd:chunked, exactly as a user
# would (`podman push --compression-format zstd:chunked --force-compression`).  Uses a throwaway
# instance of its own, removed afterwards.
p5_push_zstd() {
    local BATS_TEST_NUMBER=pusher
    p5_instance pusher
    _p5 pusher pull -q "$1" >/dev/null || fail "podman 5 pull $1 failed"
    _p5 pusher push -q --tls-verify=false --compression-format zstd:chunked --force-compression "$1" "docker://$2" >&2 ||
        fail "podman 5 push --compression-format zstd:chunked $2 failed"
    p5_cleanup
}

# p5_partial_instance NAME: a Podman 5 instance without the store but with partial pulls enabled
# (containers/storage's own zstd:chunked pull: it reads the TOC and fetches file ranges).
p5_partial_instance() {
    p5_instance "$1"
    local h=$P5_HOSTDIR/t$BATS_TEST_NUMBER/$1
    printf '[storage.options.pull_options]\nenable_partial_images = "true"\n' >> "$h/storage.conf"
}

# reg_blob_requests NAME OFFSET REPO STATUS: number of blob GETs of REPO answered with STATUS after
# line OFFSET of the registry log (206 = a range request: a partial pull).
reg_blob_requests() {
    tail -n +"$(($2 + 1))" "$(reg_log "$1")" | jq -R --arg repo "$3" --argjson st "$4" '
        fromjson? | select(.msg == "response completed" and .["http.request.method"] == "GET"
            and .["http.response.status"] == $st)
        | select(.["http.request.uri"] | test("^/v2/" + $repo + "/blobs/"))' | grep -c . || true
}

# cold_run_bytes TAG REF CMD: start a fresh store (empty cache, background fetch off) and a fresh
# Podman 5 instance, pull and run CMD in REF, and print the blob bytes the registry sent for REF's
# layers (TOC reads included).
cold_run_bytes() {
    local tag=$1 ref=$2 cmd=$3 off repo
    SGZ_STORE_CONFIG=$(lazy_only_config) start_store "cold-$tag" "$P5_HOSTDIR/mnt/cold-$tag" >&2
    p5_instance "cold-$tag" "$P5_DIR/mnt/cold-$tag"
    off=$(reg_log_lines main)
    _p5 "cold-$tag" pull -q "$ref" >/dev/null || fail "podman 5 pull $ref failed"
    _p5 "cold-$tag" run --rm "$ref" /bin/sh -c "$cmd" >/dev/null || fail "podman 5 run $ref failed"
    repo=${ref#*/}; repo=${repo%:*}
    reg_blob_bytes main "$off" "$repo" $(layer_digests "$ref")
}

# no_dir_link_mtimes VIEW: blank the mtime of directories and symlinks in a list-tree view
# ("path|type|mode uid gid mtime|extra"), in place.
no_dir_link_mtimes() {
    awk -F'|' 'BEGIN {OFS = "|"} ($2 == "directory" || $2 == "symlink") {split($3, a, " "); $3 = a[1] " " a[2] " " a[3] " -"} {print}' \
        "$1" > "$1.tmp" && mv "$1.tmp" "$1"
}
