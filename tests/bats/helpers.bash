# -*- bash -*-
# Helpers for the stargz-store e2e tests (bats).  Modelled on containers/storage tests/helpers.bash:
# every test file gets its own registry, store and work directories; every test gets its own podman
# --root/--runroot; the podman wrappers never touch /etc/containers or host storage.
#
# Layout of one test file's resources (exported from setup_file, so the tests see them):
#   SGZ_WORK=/var/tmp/sgz-e2e.XXXXXX      registries, stores, configs, per-test podman roots
#   SGZ_RUN=/run/sgz-e2e/XXXXXX           per-test podman runroots (kept short: a long runroot makes
#                                         every `podman run --rm` wait 20 s on Podman 4.3.1)
# Each podman instance has its own graphroot/runroot, set in its storage.conf: passing --root or
# --runroot instead would silently drop additionallayerstores (see _p4).
#   $SGZ_WORK/registry-NAME/{addr,pid,log,config.yml,data,htpasswd}
#   $SGZ_WORK/store-NAME/{pid,mnt,log,root,config.toml,home}
#   $SGZ_WORK/registries.conf             shared by the store and podman 4 (CONTAINERS_REGISTRIES_CONF)
#
# Knobs: STARGZ_STORE_BIN (default out/stargz-store), SGZ_FIXTURE_CACHE (/var/tmp/sgz-fixtures),
# SGZ_STORE_CONFIG (a TOML file passed with --config; default: an empty file), SGZ_P5_BASE
# (/var/tmp/podman5-chroot), SGZ_TIMEOUT (seconds per podman/skopeo/convert command, 300).
# With CI=true nothing is skipped: a missing binary or tool fails the test file.

SGZ_REPO=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
SGZ_BIN=${STARGZ_STORE_BIN:-$SGZ_REPO/out/stargz-store}
SGZ_FIXTURE_SCRIPT=$SGZ_REPO/tests/bats/fixtures/build-fixtures.sh
SGZ_LIST_SCRIPT=$SGZ_REPO/tests/bats/fixtures/list-tree.sh
SGZ_FIXTURE_CACHE=${SGZ_FIXTURE_CACHE:-/var/tmp/sgz-fixtures}
SGZ_P5_BASE=${SGZ_P5_BASE:-/var/tmp/podman5-chroot}
SGZ_P5_ROOT=$SGZ_P5_BASE/root
SGZ_TIMEOUT=${SGZ_TIMEOUT:-300}
# podman_containers_conf and podman_storage_conf: the files of a throw-away podman instance.
source "$SGZ_REPO/scripts/podman-conf.bash"

# Directories the content comparison covers in fixture images (podman adds /etc/hosts, /run, ...
# elsewhere; /etc of the image is compared separately through /etc/passwd and /etc/group).
SGZ_BUSYBOX_DIRS="/bin /data /home /usr /etc/passwd /etc/group"
SGZ_LAYERS_DIRS="/bin /w"

# ------------------------------------------------------------------ small utilities

# fail MESSAGE: fail the current test (or setup_file) with MESSAGE.
fail() {
    echo "# FAIL: $*" >&2
    return 1
}

# log MESSAGE: a line in the test's output (shown by bats when the test fails).
log() { echo "# $*" >&2; }

# require_store_binary: the product binary must exist.  Only a local run without it may skip.
require_store_binary() {
    if [ ! -x "$SGZ_BIN" ]; then
        if [ "${CI:-}" = true ]; then
            fail "$SGZ_BIN does not exist (run 'make build'); CI=true never skips"
        else
            skip "$SGZ_BIN does not exist yet (run 'make build')"
        fi
    fi
}

# binary_or_skip_file: for setup_file (bats 1.8 cannot skip there).  Returns 1 and marks the file as
# skipped (setup() then skips every test) only on a local run without the binary; with CI=true it
# returns 0 and the require_store_binary that follows fails the file.
#     setup_file() { binary_or_skip_file || return 0; require_store_binary; ... }
binary_or_skip_file() {
    [ -x "$SGZ_BIN" ] && return 0
    [ "${CI:-}" = true ] && return 0
    export SGZ_SKIP_FILE="$SGZ_BIN does not exist yet (run 'make build')"
    return 1
}

# sgz_test_setup: start of every test's setup().
sgz_test_setup() {
    [ -z "${SGZ_SKIP_FILE:-}" ] || skip "$SGZ_SKIP_FILE"
}

# require_tools TOOL...: every tool must be installed ('make deps-test' installs them).  Never skips.
require_tools() {
    local t missing=
    for t in "$@"; do command -v "$t" >/dev/null 2>&1 || missing="$missing $t"; done
    [ -z "$missing" ] || fail "missing tools:$missing (run 'make deps-test')"
}

require_root() {
    [ "$(id -u)" = 0 ] || fail "the e2e tests run as root (rootful podman, FUSE mounts, chroot)"
}

# alive PID: the process exists and is not a zombie.
alive() {
    local s
    [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 1
    s=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]
}

# pid_is PID NAME: PID is alive and its command line mentions NAME (guards against PID reuse).
pid_is() {
    alive "$1" && tr '\0' ' ' < "/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2"
}

# wait_until SECONDS COMMAND...: poll COMMAND every 0.1 s until it succeeds.
wait_until() {
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# free_port: an unused TCP port on 127.0.0.1.
free_port() {
    local p
    for _ in $(seq 200); do
        p=$((20000 + RANDOM % 30000))
        if ! ss -Hltn "sport = :$p" 2>/dev/null | grep -q .; then echo "$p"; return 0; fi
    done
    return 1
}

# umount_below DIR...: unmount every mount point at or below DIR (deepest first).
umount_below() {
    local d m
    for d in "$@"; do
        [ -n "$d" ] || continue
        for _ in 1 2 3; do
            m=$(awk -v r="$d" '$5==r || index($5, r"/")==1 {print $5}' /proc/self/mountinfo | sort -r | uniq)
            [ -z "$m" ] && break
            for x in $m; do umount "$x" 2>/dev/null || umount -l "$x" 2>/dev/null || true; done
        done
    done
}

# ------------------------------------------------------------------ per-file work directories

# sgz_setup_work: create SGZ_WORK and SGZ_RUN (exported) and clean what earlier, interrupted runs left.
sgz_setup_work() {
    require_root
    sgz_reap_stale
    mkdir -p /run/sgz-e2e
    SGZ_WORK=$(mktemp -d /var/tmp/sgz-e2e.XXXXXX)
    SGZ_RUN=$(mktemp -d /run/sgz-e2e/XXXXXX)
    SGZ_ID=$(basename "$SGZ_RUN")
    export SGZ_WORK SGZ_RUN SGZ_ID
    echo "$SGZ_RUN" > "$SGZ_WORK/run-dir"
    echo '{"auths":{}}' > "$SGZ_WORK/no-auth.json"
    echo "${BATS_RUN_TMPDIR:-}" > "$SGZ_WORK/owner"
    : > "$SGZ_WORK/registries.conf"
    export SGZ_REGISTRIES_CONF=$SGZ_WORK/registries.conf
}

# sgz_teardown_work: stop every store and registry of this file (by PID), unmount, remove.
sgz_teardown_work() {
    [ -n "${SGZ_WORK:-}" ] && [ -d "$SGZ_WORK" ] || return 0
    _sgz_cleanup_dir "$SGZ_WORK"
}

_sgz_cleanup_dir() {
    local w=$1 d run
    run=$(cat "$w/run-dir" 2>/dev/null || true)
    for d in "$w"/store-*; do [ -d "$d" ] && _sgz_stop_store_dir "$d" >/dev/null 2>&1; done
    for d in "$w"/registry-*; do [ -d "$d" ] && _sgz_stop_pidfile "$d/pid" docker-registry; done
    for d in "$w"/p5dir; do
        [ -f "$d" ] && umount_below "$(cat "$d")" && rm -rf "$(cat "$d")"
    done
    umount_below "$w" ${run:+"$run"}
    rm -rf "$w" ${run:+"$run"}
}

# sgz_reap_stale: an interrupted bats run may leave work directories with stores, registries and
# mounts behind; clean those whose bats run directory is gone.
sgz_reap_stale() {
    local w owner
    for w in /var/tmp/sgz-e2e.*; do
        [ -d "$w" ] || continue
        owner=$(cat "$w/owner" 2>/dev/null || true)
        [ -n "$owner" ] && [ -d "$owner" ] && continue
        log "cleaning stale e2e work directory $w"
        _sgz_cleanup_dir "$w"
    done
}

# _sgz_stop_pidfile PIDFILE NAME: SIGTERM the process (if it is still NAME), wait, then SIGKILL.
_sgz_stop_pidfile() {
    local pid
    pid=$(cat "$1" 2>/dev/null || true)
    [ -n "$pid" ] || return 0
    if pid_is "$pid" "$2"; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_until 10 eval "! alive $pid" || { kill -KILL "$pid" 2>/dev/null || true; wait_until 5 eval "! alive $pid"; }
    fi
    rm -f "$1"
}

# ------------------------------------------------------------------ registry

# registry_config DIR PORT AUTH: docker-registry's configuration for start_registry.
registry_config() {
    cat <<EOF
version: 0.1
log:
  level: info
  formatter: json
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $1/data
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$2
$3
EOF
}

# start_registry NAME [USER PASSWORD]: Debian's docker-registry on 127.0.0.1:<free port>, storage in
# $SGZ_WORK/registry-NAME/data, JSON log (one "response completed" line with http.response.written
# per request) in .../log.  With USER and PASSWORD: htpasswd (bcrypt) basic auth.
# Adds the registry to $SGZ_REGISTRIES_CONF as insecure (plain HTTP).
start_registry() {
    local name=$1 user=${2:-} pass=${3:-} d=$SGZ_WORK/registry-$1 port auth= attempt
    mkdir -p "$d/data"
    if [ -n "$user" ]; then
        htpasswd -Bbn "$user" "$pass" > "$d/htpasswd"
        auth="auth:
  htpasswd:
    realm: sgz-e2e
    path: $d/htpasswd"
    fi
    local code
    _reg_up() { code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v2/"); [ "$code" = 200 ] || [ "$code" = 401 ]; }
    _reg_up_or_gone() { _reg_up || ! alive "$(cat "$d/pid")"; }
    # free_port cannot reserve the port: another process may take it before the registry binds
    # it. A registry that lost that race exits at once; it is started again on another port.
    for attempt in 1 2 3 4 5; do
        port=$(free_port) || fail "no free port"
        registry_config "$d" "$port" "$auth" > "$d/config.yml"
        # A subshell, so the registry is re-parented to init and reaped there (no zombie to poll).
        (docker-registry serve "$d/config.yml" </dev/null >>"$d/log" 2>&1 3>&- & echo $! > "$d/pid")
        wait_until 20 _reg_up_or_gone && _reg_up && break
        if [ "$attempt" -lt 5 ] && ! alive "$(cat "$d/pid")" && grep -q 'address already in use' "$d/log"; then
            continue
        fi
        tail -20 "$d/log" >&2
        fail "registry $name did not come up on 127.0.0.1:$port"
    done
    echo "127.0.0.1:$port" > "$d/addr"
    cat >> "$SGZ_REGISTRIES_CONF" <<EOF
[[registry]]
location = "127.0.0.1:$port"
insecure = true

EOF
}

reg_addr() { cat "$SGZ_WORK/registry-$1/addr"; }
reg_log() { echo "$SGZ_WORK/registry-$1/log"; }

# reg_log_lines NAME: current number of lines in the registry log (an offset for reg_blob_bytes).
reg_log_lines() { wc -l < "$(reg_log "$1")"; }

# reg_blob_bytes NAME OFFSET REPO [DIGEST...]: bytes written for blob GETs of REPO (optionally only
# the given digests) in the registry log after line OFFSET.
reg_blob_bytes() {
    local name=$1 off=$2 repo=$3; shift 3
    local digests
    digests=$(printf '%s\n' "$@" | jq -R . | jq -s .)
    tail -n +"$((off + 1))" "$(reg_log "$name")" | jq -R --arg repo "$repo" --argjson ds "$digests" '
        fromjson? | select(.msg == "response completed" and .["http.request.method"] == "GET")
        | (.["http.request.uri"] | capture("^/v2/(?<r>.+)/blobs/(?<d>sha256:[0-9a-f]+)")) as $m
        | select($m.r == $repo and (($ds | length) == 0 or ($ds | index($m.d)) != null))
        | .["http.response.written"]' | awk '{s += $1} END {print s + 0}'
}

# ------------------------------------------------------------------ fixtures

# fixtures_dir: the OCI layouts built by build-fixtures.sh, cached under a key of the script and busybox.
fixtures_dir() {
    local key dir
    key=$(cat "$SGZ_FIXTURE_SCRIPT" /bin/busybox | sha256sum | cut -c1-16)
    dir=$SGZ_FIXTURE_CACHE/$key
    if [ ! -f "$dir/.complete" ]; then
        mkdir -p "$SGZ_FIXTURE_CACHE"
        (
            flock 9
            if [ ! -f "$dir/.complete" ]; then
                start=$SECONDS
                "$SGZ_FIXTURE_SCRIPT" "$dir" >&2 || exit 1
                touch "$dir/.complete"
                echo "# fixtures built in $((SECONDS - start)) s: $dir" >&2
            fi
        ) 9>"$SGZ_FIXTURE_CACHE/.lock" || fail "building fixtures failed"
    fi
    echo "$dir"
}

# push_fixture NAME DEST-REF [skopeo options...]: push fixture layout NAME (busybox|layers) as is
# (gzip layers, the same manifest digest every time).
push_fixture() {
    local name=$1 dest=$2; shift 2
    local fx
    fx=$(fixtures_dir) || return 1
    timeout "$SGZ_TIMEOUT" skopeo copy -q --preserve-digests --dest-tls-verify=false "$@" \
        "oci:$fx/$name:latest" "docker://$dest" >&2 || fail "pushing fixture $name to $dest failed"
}

# manifest REF [curl options...]: the OCI manifest of REF (host:port/repo:tag) from the registry.
manifest() {
    local ref=$1; shift
    local host=${ref%%/*} rest=${ref#*/}
    curl -fsS "$@" -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        "http://$host/v2/${rest%:*}/manifests/${rest##*:}"
}

# layer_digests REF: blob digests of REF's layers, one per line (the Gen A names).
layer_digests() { manifest "$@" | jq -r '.layers[].digest'; }
# toc_digests REF: TOC digests of REF's layers, one per line (the Gen B names).
toc_digests() { manifest "$@" | jq -r '.layers[].annotations["containerd.io/snapshot/stargz/toc.digest"] // empty'; }
# image_size REF: sum of REF's compressed layer sizes.
image_size() { manifest "$@" | jq '[.layers[].size] | add'; }

# convert SRC DST [env assignments...]: `stargz-store convert --plain-http SRC DST`; checks that the
# result is eStargz (a TOC digest annotation on every layer).  Output in $SGZ_WORK/convert.log.
convert() {
    local src=$1 dst=$2; shift 2
    echo "== convert $src $dst" >> "$SGZ_WORK/convert.log"
    env CONTAINERS_REGISTRIES_CONF="$SGZ_REGISTRIES_CONF" REGISTRY_AUTH_FILE="$SGZ_WORK/no-auth.json" "$@" \
        timeout "$SGZ_TIMEOUT" "$SGZ_BIN" convert --plain-http "$src" "$dst" >> "$SGZ_WORK/convert.log" 2>&1 || {
        tail -20 "$SGZ_WORK/convert.log" >&2; fail "stargz-store convert $src $dst failed"; }
}

# check_estargz REF [curl options...]: every layer of REF carries a TOC digest annotation.
check_estargz() {
    local n t
    n=$(manifest "$@" | jq '.layers | length')
    t=$(toc_digests "$@" | wc -l)
    [ "$n" -gt 0 ] && [ "$n" = "$t" ] || fail "$1: $t of $n layers have containerd.io/snapshot/stargz/toc.digest"
}

# ------------------------------------------------------------------ the store

# start_store NAME MOUNTPOINT [env assignments...]: run stargz-store in the background (root
# $SGZ_WORK/store-NAME/root, log .../log, debug level) and wait until MOUNTPOINT is mounted.
# It gets a private HOME and XDG dirs, REGISTRY_AUTH_FILE pointing nowhere unless given, and the
# registries.conf of this file.  The same NAME can be started again after stop_store (same root).
start_store() {
    local name=$1 mnt=$2; shift 2
    local d=$SGZ_WORK/store-$name pid
    require_store_binary
    # The store creates its --root and the mount point 0700 itself, and refuses a mount point whose
    # parent other users can enter: a missing parent is made 0700 here (an existing one is left as is).
    mkdir -p "$d/home"
    (umask 077 && mkdir -p "$(dirname "$mnt")")
    echo '{"auths":{}}' > "$d/no-auth.json"
    [ -f "$d/config.toml" ] || if [ -n "${SGZ_STORE_CONFIG:-}" ]; then cp "$SGZ_STORE_CONFIG" "$d/config.toml"; else : > "$d/config.toml"; fi
    echo "$mnt" > "$d/mnt"
    echo "== start $(date -u +%T)" >> "$d/log"
    (env HOME="$d/home" XDG_RUNTIME_DIR="$d/home/run" XDG_CONFIG_HOME="$d/home/.config" \
         REGISTRY_AUTH_FILE="$d/no-auth.json" CONTAINERS_REGISTRIES_CONF="$SGZ_REGISTRIES_CONF" "$@" \
         "$SGZ_BIN" --root "$d/root" --config "$d/config.toml" --log-level debug "$mnt" \
         </dev/null >>"$d/log" 2>&1 3>&- & echo $! > "$d/pid")
    pid=$(cat "$d/pid")
    _store_up() { mountpoint -q "$mnt" || { alive "$pid" || return 0; false; }; }
    wait_until 30 _store_up
    if ! mountpoint -q "$mnt"; then
        tail -20 "$d/log" >&2
        alive "$pid" && kill -TERM "$pid"
        fail "stargz-store $name did not mount $mnt (pid $pid)"
    fi
}

# run_few_files_and_check_bytes PODMAN: with PODMAN (podman4 or podman5, whose "store" instance
# uses a store started with lazy_only_config), pull $ESGZ and run a container that reads three
# files of the busybox fixture; the blob bytes the registry "main" served meanwhile must stay far
# below the image's compressed size.
run_few_files_and_check_bytes() {
    local pm=$1 off got size
    off=$(reg_log_lines main)
    run "$pm" pull -q "$ESGZ"
    assert_success
    run "$pm" run --rm "$ESGZ" /bin/sh -c 'cat /data/small/hello.txt /data/deep/a/b/c/d/e/leaf.txt; wc -c < /data/medium/text-1.5m.txt'
    assert_success
    [ "${lines[0]}" = "hello from the stargz-store e2e fixture" ]
    [ "${lines[1]}" = leaf ]
    [ "${lines[2]}" = 1572864 ]
    got=$(reg_blob_bytes main "$off" fixtures/busybox $(layer_digests "$ESGZ"))
    size=$(image_size "$ESGZ")
    log "blob bytes fetched: $got of $size (compressed image size)"
    [ "$got" -gt 0 ] || fail "no blob bytes fetched at all: is the registry log right?"
    [ $((got * 3)) -lt "$size" ] || fail "fetched $got bytes, not far below the image size $size"
}

# assert_released STORE OFFSET DIGEST...: after line OFFSET of store STORE's log, each DIGEST (the
# layer directory names storage used) was released down to refs=0 and its layer freed.
assert_released() {
    local st=$1 off=$2 d rel freed; shift 2
    rel=$(store_events "$st" "$off" release)
    freed=$(store_events "$st" "$off" "layer freed")
    for d in "$@"; do
        has_event "$rel" '.digest == $d and (.refs | tostring) == "0"' --arg d "$d" ||
            fail "no 'release' of $d down to refs=0; releases: $rel"
        grep -qF "$d" <<<"$freed" || fail "no 'layer freed' for $d; got: $freed"
    done
}

# esgz_fixture_setup REGISTRY FIXTURE GZVAR ESGZVAR: the setup_file of the tests that run one
# fixture lazily through store "main" with Podman 4: esgz_fixture, then store "main" started.
esgz_fixture_setup() {
    esgz_fixture "$@"
    start_store main "$SGZ_WORK/mnt/main"
}

# esgz_fixture REGISTRY FIXTURE GZVAR ESGZVAR: registry REGISTRY started (its address in REG), and
# FIXTURE pushed as gzip and converted to a checked eStargz image (their references exported in the
# variables named GZVAR and ESGZVAR).
esgz_fixture() {
    local reg=$1 fixture=$2
    require_store_binary
    require_tools podman runc docker-registry skopeo jq curl ss
    sgz_setup_work
    start_registry "$reg"
    export REG=$(reg_addr "$reg")
    export "$3=$REG/fixtures/$fixture:gzip" "$4=$REG/fixtures/$fixture:esgz"
    push_fixture "$fixture" "${!3}"
    convert "${!3}" "${!4}"
    check_estargz "${!4}"
}

# lazy_only_config: a store config with background fetch off, for tests that count what a
# container's own reads fetch (background fetch would soon fetch the whole layer).
lazy_only_config() {
    local f=$SGZ_WORK/lazy-only.toml
    printf '[store]\nbackground_fetch = false\n' > "$f"
    echo "$f"
}

# stop_registry NAME: stop registry NAME by its PID (it stays in registries.conf).
stop_registry() { _sgz_stop_pidfile "$SGZ_WORK/registry-$1/pid" docker-registry; }

store_log() { echo "$SGZ_WORK/store-$1/log"; }
store_mnt() { cat "$SGZ_WORK/store-$1/mnt"; }
store_pid() { cat "$SGZ_WORK/store-$1/pid"; }

# stop_store NAME: SIGTERM, wait up to 15 s for the exit and the unmount.  Fails (after cleaning up
# with SIGKILL and umount) if the store did not exit or did not unmount cleanly by itself.
stop_store() { _sgz_stop_store_dir "$SGZ_WORK/store-$1"; }

_sgz_stop_store_dir() {
    local d=$1 pid mnt ok=0
    pid=$(cat "$d/pid" 2>/dev/null || true)
    mnt=$(cat "$d/mnt" 2>/dev/null || true)
    if [ -n "$pid" ] && pid_is "$pid" stargz-store; then
        kill -TERM "$pid"
        if ! wait_until 15 eval "! alive $pid"; then
            echo "# store pid $pid did not exit within 15 s of SIGTERM; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true; wait_until 5 eval "! alive $pid"; ok=1
        fi
    fi
    rm -f "$d/pid"
    if [ -n "$mnt" ] && mountpoint -q "$mnt" 2>/dev/null; then
        echo "# $mnt still mounted after the store exited; unmounting" >&2
        umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
        ok=1
    fi
    echo "== stopped $(date -u +%T) forced=$ok" >> "$d/log"
    return $ok
}

# store_log_lines NAME: current line count of the store's log (an offset for store_events).
store_log_lines() { wc -l < "$(store_log "$1")"; }

# store_events NAME OFFSET MSG: JSON log records with msg MSG after line OFFSET, one per line
# (compact JSON).
store_events() {
    tail -n +"$(($2 + 1))" "$(store_log "$1")" | jq -cR --arg m "$3" 'fromjson? | select(.msg == $m)'
}

# has_event EVENTS FILTER [jq args...]: some record in EVENTS (store_events output) matches the jq
# boolean FILTER (empty EVENTS never match).
has_event() {
    local ev=$1 f=$2; shift 2
    [ -n "$ev" ] && jq -s -e "$@" "map(select($f)) | length > 0" <<<"$ev" >/dev/null
}

# ------------------------------------------------------------------ podman 4 (host)

# p4_instance NAME [ALS-MOUNTPOINT]: (re)configure the podman 4 instance NAME of the current test:
# its own containers.conf, storage.conf (overlay; graphroot and runroot; the store as additional layer store if given),
# --root under $SGZ_WORK and a short --runroot under $SGZ_RUN.
p4_instance() {
    local d=$SGZ_WORK/t$BATS_TEST_NUMBER/p4-$1 rr=$SGZ_RUN/${BATS_TEST_NUMBER}$1
    mkdir -p "$d/root" "$rr"
    _podman_instance_files "$d" "$d" "$rr" "${2:-}"
}

# _podman_instance_files DIR ROOTDIR RUNROOT [ALS]: write an instance's containers.conf,
# storage.conf (graphroot ROOTDIR/root, runroot RUNROOT/storage, the store ALS as additional
# layer store if given), runroot and empty auth file into DIR. ROOTDIR and RUNROOT are the paths
# Podman sees (inside the chroot for Podman 5), DIR where they are on the host.
_podman_instance_files() {
    local d=$1 root=$2 rr=$3 als=${4:-}
    podman_containers_conf "$rr/libpod" > "$d/containers.conf"
    podman_storage_conf "$root/root" "$rr/storage" "$als" > "$d/storage.conf"
    echo "$rr" > "$d/runroot"
    echo '{"auths":{}}' > "$d/no-auth.json"
}

# _p4 NAME ARGS...: podman 4 with instance NAME's files.  No credentials unless --authfile is given.
# The roots are set in storage.conf, never with --root/--runroot: given on the command line they make
# Podman (4.3.1 and 5.4 alike) drop every storage.conf driver option, additionallayerstores included.
_p4() {
    local d=$SGZ_WORK/t$BATS_TEST_NUMBER/p4-$1; shift
    [ -f "$d/storage.conf" ] || fail "p4_instance $(basename "$d") was not set up"
    local rr; rr=$(cat "$d/runroot")
    env CONTAINERS_CONF="$d/containers.conf" CONTAINERS_STORAGE_CONF="$d/storage.conf" \
        CONTAINERS_REGISTRIES_CONF="$SGZ_REGISTRIES_CONF" REGISTRY_AUTH_FILE="$d/no-auth.json" \
        timeout "$SGZ_TIMEOUT" podman "$@"
}

# podman4: the instance that uses the store ("store").  podman4_plain: no store ("plain").
podman4() { _p4 store "$@"; }
podman4_plain() { _p4 plain "$@"; }

# p4_cleanup: remove containers and images of the current test's instances, unmount, delete.
p4_cleanup() {
    local d rr
    for d in "$SGZ_WORK/t$BATS_TEST_NUMBER"/p4-*; do
        [ -f "$d/storage.conf" ] || continue
        if [ -n "$(ls -A "$d/root" 2>/dev/null)" ]; then   # skip instances the test never used
            _p4 "${d##*/p4-}" rm -af -t 0 >/dev/null 2>&1 || true
            _p4 "${d##*/p4-}" rmi -af >/dev/null 2>&1 || true
        fi
        rr=$(cat "$d/runroot")
        umount_below "$d" "$rr"
        rm -rf "$d" "$rr"
    done
}

# ------------------------------------------------------------------ podman 5 (trixie chroot)

# p5_setup_file: build (cached) and mount the chroot with tests/podman5/setup.sh; remember whether
# it was mounted before, so teardown only unmounts what this file mounted.  Creates the file's
# directory inside the chroot (P5_DIR, chroot path; P5_HOSTDIR, host path) and its registries.conf.
p5_setup_file() {
    if mountpoint -q "$SGZ_P5_ROOT" 2>/dev/null; then P5_WAS_MOUNTED=1; else P5_WAS_MOUNTED=0; fi
    export P5_WAS_MOUNTED
    local start=$SECONDS
    P5_BASE=$SGZ_P5_BASE "$SGZ_REPO/tests/podman5/setup.sh" all >&2 || fail "tests/podman5/setup.sh failed"
    echo "# podman5 chroot ready in $((SECONDS - start)) s" >&2
    export P5_DIR=/srv/sgz/$SGZ_ID
    export P5_HOSTDIR=$SGZ_P5_ROOT$P5_DIR
    mkdir -p "$P5_HOSTDIR"
    echo "$P5_HOSTDIR" > "$SGZ_WORK/p5dir"
    p5_sync_registries
}

# p5_sync_registries: copy this file's registries.conf into the chroot (call after start_registry).
p5_sync_registries() { cp "$SGZ_REGISTRIES_CONF" "$P5_HOSTDIR/registries.conf"; }

# p5_teardown_file: unmount this file's mounts inside the chroot; the whole chroot only if this
# file mounted it.  Stores must be stopped first (sgz_teardown_work does that).
p5_teardown_file() {
    [ -n "${P5_HOSTDIR:-}" ] || return 0
    umount_below "$P5_HOSTDIR" "$SGZ_P5_ROOT/run/sgz/$SGZ_ID"
    rm -rf "$P5_HOSTDIR" "$SGZ_P5_ROOT/run/sgz/$SGZ_ID"
    if [ "${P5_WAS_MOUNTED:-1}" = 0 ]; then
        P5_BASE=$SGZ_P5_BASE "$SGZ_REPO/tests/podman5/teardown.sh" >&2 || true
    fi
}

# p5_instance NAME [ALS-MOUNTPOINT-IN-CHROOT]: like p4_instance, inside the chroot.
p5_instance() {
    local c=$P5_DIR/t$BATS_TEST_NUMBER/$1 rr=/run/sgz/$SGZ_ID/${BATS_TEST_NUMBER}$1
    mkdir -p "$SGZ_P5_ROOT$c/root" "$SGZ_P5_ROOT$rr"
    _podman_instance_files "$SGZ_P5_ROOT$c" "$c" "$rr" "${2:-}"
}

# _p5 NAME ARGS...: Podman 5 in the chroot with a clean environment and instance NAME's files.
_p5() {
    local c=$P5_DIR/t$BATS_TEST_NUMBER/$1; shift
    local h=$SGZ_P5_ROOT$c
    [ -f "$h/storage.conf" ] || fail "p5_instance $(basename "$c") was not set up"
    local rr; rr=$(cat "$h/runroot")
    timeout "$SGZ_TIMEOUT" chroot "$SGZ_P5_ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        PODMAN_IGNORE_CGROUPSV1_WARNING=1 CONTAINERS_CONF="$c/containers.conf" \
        CONTAINERS_STORAGE_CONF="$c/storage.conf" CONTAINERS_REGISTRIES_CONF="$P5_DIR/registries.conf" \
        REGISTRY_AUTH_FILE="$c/no-auth.json" \
        podman "$@"
}

podman5() { _p5 store "$@"; }
podman5_plain() { _p5 plain "$@"; }

p5_cleanup() {
    local h rr
    for h in "$P5_HOSTDIR/t$BATS_TEST_NUMBER"/*; do
        [ -f "$h/storage.conf" ] || continue
        if [ -n "$(ls -A "$h/root" 2>/dev/null)" ]; then
            _p5 "${h##*/}" rm -af -t 0 >/dev/null 2>&1 || true
            _p5 "${h##*/}" rmi -af >/dev/null 2>&1 || true
        fi
        rr=$SGZ_P5_ROOT$(cat "$h/runroot")
        umount_below "$h" "$rr"
        rm -rf "$h" "$rr"
    done
}

# ------------------------------------------------------------------ per-test hooks

# sgz_test_teardown: on failure show the tails of the logs, then clean the test's podman instances.
sgz_test_teardown() {
    if [ -z "${BATS_TEST_COMPLETED:-}" ] && [ -n "${SGZ_WORK:-}" ]; then
        local f
        for f in "$SGZ_WORK"/store-*/log; do
            [ -f "$f" ] || continue
            echo "# --- last lines of $f"
            tail -n 25 "$f" | sed 's/^/#   /'
        done
        [ -f "$SGZ_WORK/convert.log" ] && { echo "# --- last lines of convert.log"; tail -n 5 "$SGZ_WORK/convert.log" | sed 's/^/#   /'; }
    fi
    [ -n "${SGZ_WORK:-}" ] || return 0
    p4_cleanup
    [ -n "${P5_HOSTDIR:-}" ] && p5_cleanup
    return 0
}

# ------------------------------------------------------------------ assertions

# assert_success / assert_failure: for use after `run`; print the output on failure.
assert_success() {
    if [ "$status" -ne 0 ]; then
        echo "# status $status, output:"; printf '%s\n' "$output" | sed 's/^/#   /'
        return 1
    fi
}
assert_failure() {
    if [ "$status" -eq 0 ]; then
        echo "# expected a failure; output:"; printf '%s\n' "$output" | sed 's/^/#   /'
        return 1
    fi
}

# assert_same_view FILE-A FILE-B: the two tree listings are identical (a diff on failure).
assert_same_view() {
    if ! diff -u "$1" "$2" > "$2.diff"; then
        echo "# views differ ($1 vs $2):"; head -60 "$2.diff" | sed 's/^/#   /'
        return 1
    fi
}

# list_tree_script: the in-container listing script (see fixtures/list-tree.sh).
list_tree_script() { cat "$SGZ_LIST_SCRIPT"; }
