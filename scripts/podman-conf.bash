# podman-conf.bash: the configuration files of a throw-away Podman instance, for the shell scripts
# (tests/bats/helpers.bash, tests/podman5/setup.sh, scripts/demo.sh).  Source it; each function
# prints a file.  The Go twin is internal/podmanconf (used by `stargz-store optimize` and
# stargz-bench); its test checks that both print the same bytes.  Paths must not contain '"' or '\'.
#
# The roots go into storage.conf, never onto the command line: given as --root or --runroot, they
# make Podman (4.3.1 and 5.x alike) drop every storage.conf driver option, additionallayerstores
# included.

# podman_containers_conf TMPDIR: a containers.conf whose temporary files and locks live under TMPDIR.
podman_containers_conf() {
    cat <<EOF
[containers]
# Explicit limits: Podman's default (1048576) can exceed the host's hard RLIMIT_NOFILE.
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
# No bridge networking: netavark would add podman0 and firewall rules to the shared host netns.
netns = "host"

[engine]
# crun fails on hosts with hybrid cgroups ("cgroups in hybrid mode not supported").
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
# File locks under tmp_dir instead of the shared /dev/shm/libpod_lock: a podman with a fresh
# tmp_dir frees every lock in the shm table, which would break any other podman on the host.
lock_type = "file"
tmp_dir = "$1"
EOF
}

# podman_storage_conf GRAPHROOT RUNROOT [ALS]: an overlay storage.conf with these roots and, if ALS
# is given, the store mounted there as additional layer store (with :ref).
podman_storage_conf() {
    printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n' "$1" "$2"
    if [ -n "${3:-}" ]; then
        printf '[storage.options]\nadditionallayerstores = ["%s:ref"]\n' "$3"
    fi
}
