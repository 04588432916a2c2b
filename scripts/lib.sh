# Shared shell helpers for boundary-runc's scripts. Sourced, not run.

# Installs the Debian packages named, skipping those already present.
install_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "==> apt-get install ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# The build needs cargo (the Rust toolchain, `rust-version` in Cargo.toml).
# Under `sudo` the caller's ~/.cargo/bin is usually not on root's PATH.
need_cargo() {
    local want have
    want=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml)
    if ! command -v cargo >/dev/null; then
        echo "error: cargo is not on PATH; the build needs the Rust toolchain $want or newer (https://rustup.rs)." >&2
        echo "       Installed as another user? Keep that user's PATH: sudo env \"PATH=\$PATH\" $0" >&2
        exit 1
    fi
    have=$(cargo --version | awk '{print $2}')
    if [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" != "$want" ]; then
        echo "error: cargo $have is older than the Rust $want this workspace needs (rustup update stable)" >&2
        exit 1
    fi
}

need_root() {
    if [ "$(id -u)" != 0 ]; then
        echo "error: $0 must run as root (it creates network namespaces, nftables tables and containers)" >&2
        exit 1
    fi
}

# Builds a busybox + curl root filesystem in $1 (no download: Debian's
# busybox-static and the host's curl with the libraries ldd names).
build_rootfs() {
    local root=$1
    mkdir -p "$root"/{bin,etc,proc,sys,dev,tmp,usr/bin}
    cp /bin/busybox "$root/bin/busybox"
    for c in sh ash ip ls cat echo sleep wget nc ping nslookup grep id true unshare env head; do
        ln -sf busybox "$root/bin/$c"
    done
    cp /usr/bin/curl "$root/usr/bin/curl"
    for lib in $(ldd /usr/bin/curl | grep -o '/[^ ]*'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
    echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
    echo "root:x:0:" > "$root/etc/group"
}

# Writes a minimal OCI config.json (as `runc spec` makes it: fresh network
# namespace, default capabilities) running `sh -c "$2"` under the demo policy.
write_demo_spec() {
    local out=$1 script=$2
    local escaped
    escaped=$(printf '%s' "$script" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | awk '{printf "%s\\n", $0}')
    cat > "$out" <<JSON
{
  "ociVersion": "1.0.2-dev",
  "process": {
    "terminal": false,
    "user": {"uid": 0, "gid": 0},
    "args": ["sh", "-c", "$escaped"],
    "env": [
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "BOUNDARY_ALLOW=method=GET domain=demo.internal path=/public/*"
    ],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"]
    },
    "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
    "noNewPrivileges": true
  },
  "root": {"path": "rootfs", "readonly": true},
  "hostname": "agent",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]}
  ],
  "linux": {
    "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
    "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
    "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
  }
}
JSON
}

# The start-up benchmarks' container: $1/bundle runs /bin/true (busybox
# rootfs, `runc spec`'s shape) and $1/pristine.json is its config.json, to
# copy back before every run (boundary-runc rewrites the bundle's).
true_bundle() {
    build_rootfs "$1/bundle/rootfs"
    write_demo_spec "$1/bundle/config.json" "true"
    cp "$1/bundle/config.json" "$1/pristine.json"
}

# true_image DIR TAG: the Docker start-up benchmarks' image, built from
# DIR/ctx: busybox as /bin/true and /bin/sh, CMD /bin/true.
true_image() {
    mkdir -p "$1/ctx/rootfs/bin"
    cp /bin/busybox "$1/ctx/rootfs/bin/busybox"
    ln -sf busybox "$1/ctx/rootfs/bin/true"
    ln -sf busybox "$1/ctx/rootfs/bin/sh"
    printf 'FROM scratch\nCOPY rootfs/ /\nCMD ["/bin/true"]\n' > "$1/ctx/Dockerfile"
    DOCKER_BUILDKIT=0 docker build -q -t "$2" "$1/ctx" > /dev/null
}

# builds_cleanup WORK IMAGE: the clean-up of the harnesses that run builds
# side by side (ab.sh, docker-phases.sh), from their EXIT trap. Removes the
# Docker runtimes named in the caller's `registered` array (and IMAGE,
# built once any was registered), unmounts the netns and userns directories of each
# build's state root (WORK/stateN, one per entry of the caller's `dirs`),
# and removes WORK.
builds_cleanup() {
    if [ ${#registered[@]} -gt 0 ]; then
        docker_runtime remove "${registered[@]}" || true
        docker rmi -f "$2" > /dev/null 2>&1 || true
    fi
    for i in "${!dirs[@]}"; do umount "$1/state$i/netns" "$1/state$i/userns" 2>/dev/null || true; done
    rm -rf "$1"
}

# bench_config FILE STATE POOL DIR: boundary-runc settings for a benchmark,
# jails' state under STATE with addresses from POOL, the host CA and the
# audit log under DIR.
bench_config() {
    cat > "$1" <<CONF
state_root = "$2"
[network]
pool = "$3"
[tls]
ca_dir = "$4/ca"
[audit]
dir = "$4/audit"
CONF
}

# docker_runtime add NAME PATH | docker_runtime remove NAME...: registers
# (or removes) runtimes in /etc/docker/daemon.json, keeping every other
# key, and makes dockerd reload it. The flock is the one the root tests
# take around their own edits.
docker_runtime() {
    local daemon_json=/etc/docker/daemon.json op=$1
    shift
    exec 9> /run/boundary-e2e-daemon-json.lock
    flock 9
    [ -s "$daemon_json" ] || echo '{}' > "$daemon_json"
    if [ "$op" = add ]; then
        jq --arg n "$1" --arg p "$2" '.runtimes[$n] = {path: $p}' "$daemon_json" > "$daemon_json.brb-tmp"
    else
        jq '.runtimes |= with_entries(select(.key as $k | $ARGS.positional | index($k) | not))' --args "$@" < "$daemon_json" > "$daemon_json.brb-tmp"
    fi
    mv "$daemon_json.brb-tmp" "$daemon_json"
    kill -HUP "$(cat /var/run/docker.pid)"
    sleep 1
    exec 9>&-
}
