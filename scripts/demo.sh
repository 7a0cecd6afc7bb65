#!/bin/bash
# demo.sh: stargz-store end to end on one machine, as root, with nothing but Debian packages.
#
#   1. a registry (Debian's docker-registry) on 127.0.0.1:<free port>, storage in a temp dir
#   2. a small image built locally: busybox-static, a few text files and 8 MiB of random data,
#      `podman import`ed and pushed as an ordinary gzip image
#   3. `stargz-store convert --plain-http` turns it into an eStargz image in the same registry
#   4. stargz-store mounts its store on a temp directory; podman (its own config files, --root and
#      --runroot; /etc/containers is never touched) runs the eStargz image through it
#   5. the registry's log tells how many blob bytes that run fetched, versus the image's size
#
# Everything is removed on exit, also on failure or Ctrl-C: the store and the registry are stopped
# by PID, the mount point is unmounted, the temp directories are deleted.
# `make demo` installs the packages and builds the binary first.  Environment: STARGZ_STORE_BIN.
set -euo pipefail

BIN=${STARGZ_STORE_BIN:-$(cd "$(dirname "$0")/.." && pwd)/out/stargz-store}
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (rootful podman and a FUSE mount)"
[ -x "$BIN" ] || die "$BIN not found; run 'make build' (or 'make demo')"
for t in podman runc docker-registry jq curl ss; do command -v $t >/dev/null || die "$t is missing; run 'make demo'"; done
[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || die "/bin/busybox must be busybox-static"

WORK=$(mktemp -d /var/tmp/sgz-demo.XXXXXX)
mkdir -p /run/sgz-demo
RUN=$(mktemp -d /run/sgz-demo/XXXXXX)      # short: podman's runroot path must stay short
REG_PID= STORE_PID=
MNT=$WORK/store

alive() { [ -n "$1" ] && [ -r "/proc/$1/stat" ] && ! sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | grep -q '^[ZX]'; }
stop_pid() {   # stop_pid PID: SIGTERM, up to 15 s, then SIGKILL
  local pid=$1 i
  alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 150); do alive "$pid" || return 0; sleep 0.1; done
  echo "demo: pid $pid ignored SIGTERM; killing" >&2; kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  local rc=$?
  set +e
  [ $rc -eq 0 ] || { echo; echo "demo FAILED (exit $rc); last lines of the store log:" >&2; tail -15 "$WORK/store.log" 2>/dev/null >&2; }
  stop_pid "$STORE_PID"
  stop_pid "$REG_PID"
  for m in $(awk -v a="$WORK" -v b="$RUN" 'index($5, a"/")==1 || index($5, b"/")==1 {print $5}' /proc/self/mountinfo | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  rm -rf "$WORK" "$RUN"
  rmdir /run/sgz-demo 2>/dev/null
  echo "demo: cleaned up"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# podman with its own files.  Instance "build" has no store; "run" uses the store.
# The roots live in each storage.conf, not in --root/--runroot: Podman 4 drops every
# storage.conf driver option (additionallayerstores included) when --root is given.
source "$(dirname "$0")/podman-conf.bash"
pm() {  # pm INSTANCE ARGS...
  local i=$1; shift
  CONTAINERS_CONF=$WORK/containers-$i.conf CONTAINERS_STORAGE_CONF=$WORK/storage-$i.conf \
    CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf \
    podman "$@"
}
podman_containers_conf "$RUN/build-tmp" > "$WORK/containers-build.conf"
podman_storage_conf "$WORK/podman-build" "$RUN/build" > "$WORK/storage-build.conf"
podman_containers_conf "$RUN/run-tmp" > "$WORK/containers-run.conf"
podman_storage_conf "$WORK/podman-run" "$RUN/run" "$MNT" > "$WORK/storage-run.conf"

say "1. registry on loopback"
PORT=
for _ in $(seq 100); do p=$((20000 + RANDOM % 30000)); ss -Hltn "sport = :$p" | grep -q . || { PORT=$p; break; }; done
[ -n "$PORT" ] || die "no free port"
REG=127.0.0.1:$PORT
cat > "$WORK/registry.yml" <<EOF
version: 0.1
log: {level: info, formatter: json, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $WORK/registry}}
http: {addr: "$REG"}
EOF
docker-registry serve "$WORK/registry.yml" </dev/null >"$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do curl -fs "http://$REG/v2/" >/dev/null && break; sleep 0.1; done
curl -fs "http://$REG/v2/" >/dev/null || die "registry did not start"
printf '[[registry]]\nlocation = "%s"\ninsecure = true\n' "$REG" > "$WORK/registries.conf"
echo "registry $REG (pid $REG_PID)"

say "2. build a small image from busybox-static and push it as plain gzip"
R=$WORK/rootfs
mkdir -p "$R/bin" "$R/etc" "$R/app/data"
cp /bin/busybox "$R/bin/busybox"
for a in sh cat ls wc head sha256sum; do ln -s busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$R/etc/passwd"
echo 'Hello from a lazily pulled eStargz image!' > "$R/app/hello.txt"
seq 1 20000 > "$R/app/data/numbers.txt"
head -c 8388608 /dev/urandom > "$R/app/data/blob-8m.bin"     # never read by the demo's container
tar -C "$R" -cf "$WORK/rootfs.tar" .
GZ=$REG/demo/app:gzip
ESGZ=$REG/demo/app:esgz
pm build import -q --change 'CMD ["/bin/sh"]' "$WORK/rootfs.tar" localhost/demo/app:latest >/dev/null
pm build push -q --tls-verify=false localhost/demo/app:latest "docker://$GZ"
echo "pushed $GZ"

say "3. convert to eStargz: stargz-store convert --plain-http"
CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf "$BIN" convert --plain-http "$GZ" "$ESGZ" | tail -3

say "4. start the store and run the eStargz image lazily"
# The store creates its root and mount point 0700 ($WORK, the mount point's parent, is 0700).
: > "$WORK/config.toml"
CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf \
  "$BIN" --root "$WORK/store-root" --config "$WORK/config.toml" --log-level debug "$MNT" \
  </dev/null >"$WORK/store.log" 2>&1 &
STORE_PID=$!
for _ in $(seq 300); do mountpoint -q "$MNT" && break; alive "$STORE_PID" || break; sleep 0.1; done
mountpoint -q "$MNT" || die "the store did not mount $MNT"
echo "stargz-store pid $STORE_PID, mounted on $MNT"
off=$(wc -l < "$WORK/registry.log")
start=$(date +%s.%N)
pm run run --rm "$ESGZ" /bin/sh -c 'cat /app/hello.txt; echo "numbers.txt has $(wc -l < /app/data/numbers.txt) lines"; ls -l /app/data'
end=$(date +%s.%N)

say "5. what the run fetched from the registry"
man=$(curl -fs -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/demo/app/manifests/esgz")
size=$(jq '[.layers[].size] | add' <<<"$man")
digests=$(jq -c '[.layers[].digest]' <<<"$man")
fetched=$(tail -n +"$((off + 1))" "$WORK/registry.log" | jq -R --argjson ds "$digests" '
  fromjson? | select(.msg == "response completed" and .["http.request.method"] == "GET")
  | (.["http.request.uri"] | capture("/blobs/(?<d>sha256:[0-9a-f]+)")) as $m
  | select($ds | index($m.d)) | .["http.response.written"]' | awk '{s += $1} END {print s + 0}')
lazy=$(jq -cR 'fromjson? | select(.msg == "use" and has("refs"))' "$WORK/store.log" | grep -c . || true)
printf "podman run took            %s s\n" "$(awk "BEGIN{printf \"%.1f\", $end - $start}")"
printf 'image size (compressed)    %10d bytes\n' "$size"
printf 'blob bytes fetched by run  %10d bytes (%d%%)\n' "$fetched" $((fetched * 100 / size))
printf 'store "use" notifications  %10d\n' "$lazy"
if [ "$lazy" -eq 0 ]; then
  echo "note: the store logged no 'use', so podman pulled the image normally; the store's last log lines:"
  tail -5 "$WORK/store.log"
fi
