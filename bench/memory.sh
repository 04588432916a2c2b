#!/usr/bin/env bash
# Idle sidecar memory: N jailed containers (`runc spec` bundle running
# `sleep infinity`, host-namespace shape so each jail gets a private host
# side), then VmRSS, RssFile, RssAnon and PSS of each sidecar's three
# processes (keeper, supervisor, worker), and the totals.
#
#   sudo bench/memory.sh [--bin DIR] [--request] [N]
#       DIR holds boundary-runc, boundary-hook, boundary-sidecar (default
#       target/release); N=10. --request: then every jail asks for a
#       name and an HTTPS URL its rules deny (curl inside the jail: the
#       sidecar answers the name itself, terminates TLS with a leaf it
#       issues and answers 403), measured right after and once more after
#       25 s without traffic (the worker gives back what serving mapped
#       after 10 s quiet).
# Nothing leaves the machine: denied names resolve to the sidecar. Cleans
# up after itself.
set -euo pipefail
BIN=$(cd "$(dirname "$0")/.." && pwd)/target/release N=10 REQUEST=0
while [ $# -gt 0 ]; do
    case $1 in
        --bin) BIN=$2; shift ;;
        --request) REQUEST=1 ;;
        [0-9]*) N=$1 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || { echo "needs root (creates containers)" >&2; exit 1; }
for t in runc jq curl; do command -v $t >/dev/null || { echo "missing $t (apt-get install $t)" >&2; exit 1; }; done
[ -x "$BIN/boundary-runc" ] || { echo "no boundary-runc in $BIN (cargo build --release --workspace --bins)" >&2; exit 1; }

W=$(mktemp -d /tmp/bench-memory.XXXXXX)
brc() { BOUNDARY_RUNC_CONFIG=$W/config.toml "$BIN/boundary-runc" --root "$W/runc-root" "$@"; }
cleanup() {
    set +e
    for i in $(seq 1 "$N"); do brc delete --force "mem$i" >/dev/null 2>&1; done
    umount "$W/state/netns" "$W/state/userns" 2>/dev/null
    rm -rf "$W"
}
trap cleanup EXIT

mkdir -p "$W"/rootfs/{usr,etc,proc,sys,dev,tmp} "$W/state" "$W/audit" "$W/ca"
for l in bin lib lib64 sbin; do ln -s "usr/$l" "$W/rootfs/$l"; done
cat > "$W/config.toml" <<CONF
state_root = "$W/state"
[network]
pool = "10.213.248.0/24"
[tls]
ca_dir = "$W/ca"
[audit]
dir = "$W/audit"
CONF
(cd "$W" && runc spec)
jq --arg rootfs "$W/rootfs" '.root = {path: $rootfs, readonly: true} | .process.terminal = false
    | .process.args = ["/usr/bin/sleep", "infinity"]
    | .mounts += [{destination: "/usr", type: "bind", source: "/usr", options: ["rbind", "ro"]}]
    | .annotations["io.boundary.allow"] = "domain=example.com"' "$W/config.json" > "$W/spec.json"
for i in $(seq 1 "$N"); do
    mkdir -p "$W/b$i" && cp "$W/spec.json" "$W/b$i/config.json"
    brc create --bundle "$W/b$i" "mem$i" </dev/null >/dev/null
    brc start "mem$i"
done
sleep 4   # start-up pages are given back 2 s after each process starts

report() {
    local -A rss=() file=() anon=() pss=()
    local total_rss=0 total_pss=0 i role p r f a s
    for i in $(seq 1 "$N"); do
        for role in keeper supervisor worker; do
            p=$(jq -r ".$role" "$W/state/mem$i/sidecar.pids")
            read -r r f a < <(awk '/^VmRSS:/ {r=$2} /^RssFile:/ {f=$2} /^RssAnon:/ {a=$2} END {print r, f, a}' "/proc/$p/status")
            s=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup")
            rss[$role]=$(( ${rss[$role]:-0} + r )) file[$role]=$(( ${file[$role]:-0} + f ))
            anon[$role]=$(( ${anon[$role]:-0} + a )) pss[$role]=$(( ${pss[$role]:-0} + s ))
            total_rss=$((total_rss + r)) total_pss=$((total_pss + s))
        done
    done
    echo "$N sidecars, $1, mean per process (KiB):"
    printf '  %-10s %8s %8s %8s %8s\n' process VmRSS RssFile RssAnon PSS
    for role in keeper supervisor worker; do
        printf '  %-10s %8d %8d %8d %8d\n' $role $((rss[$role] / N)) $((file[$role] / N)) $((anon[$role] / N)) $((pss[$role] / N))
    done
    echo "  per sidecar: VmRSS $((total_rss / N)) KiB, PSS $((total_pss / N)) KiB; all $N: VmRSS $((total_rss / 1024)) MiB, PSS $((total_pss / 1024)) MiB"
}

report "idle, before any traffic"
[ "$REQUEST" = 1 ] || exit 0
for i in $(seq 1 "$N"); do
    out=$(brc exec "mem$i" /usr/bin/curl -sk -o /dev/null -w '%{http_code}' --max-time 10 https://denied.test/ </dev/null) || true
    [ "$out" = 403 ] || { echo "error: jail mem$i: curl https://denied.test/ gave '$out', not the sidecar's 403" >&2; exit 1; }
done
report "right after one denied HTTPS request each"
sleep 25
report "25 s later, no traffic"
