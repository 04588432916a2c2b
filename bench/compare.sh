#!/usr/bin/env bash
# boundary-runc against squid (ssl_bump, intercept), mitmproxy (transparent)
# and no proxy, side by side on one machine; see docs/benchmarks.md.
#
#   sudo bench/compare.sh            full run (~10 min on 2 cores), writes
#                                    its table into docs/benchmarks.md
#   sudo bench/compare.sh --smoke    seconds-long runs, 1 round, 64 MiB big
#                                    file; prints the table, writes nothing
#
# Options: --rounds N, --no-write. Environment: BENCH_DURATION (s per load
# run), BENCH_BIG_SIZE (truncate size, e.g. 256M), BENCH_LOGS (a directory
# to keep every client's raw output in), BENCH_BIN (a directory with
# boundary-runc, boundary-sidecar and boundary-hook already built: no build;
# BENCH_REV names their commit in the table).
#
# It installs the peers from Debian (nginx, squid-openssl, mitmproxy, wrk,
# nghttp2-client), builds the release binaries, makes three namespaces
# (client, proxy hop, origin; see bench/compare/world.sh), runs every
# scenario for every peer, interleaved, for each round, and removes
# everything it made on exit (namespaces, processes, nft tables, jails,
# Docker image and runtime entry).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
. scripts/lib.sh
need_root

SMOKE=0 ROUNDS="" WRITE=1
while [ $# -gt 0 ]; do
    case $1 in
        --smoke) SMOKE=1; WRITE=0 ;;
        --rounds) ROUNDS=$2; shift ;;
        --no-write) WRITE=0 ;;
        *) echo "usage: $0 [--smoke] [--rounds N] [--no-write]" >&2; exit 2 ;;
    esac
    shift
done
if [ $SMOKE = 1 ]; then
    : "${ROUNDS:=1}" "${BENCH_DURATION:=2}" "${BENCH_BIG_SIZE:=64M}"
    BIG_TIMEOUT=10 SSE_EVENTS=10 MEM_CONTAINERS=3 LIFE_RUNS=3
else
    : "${ROUNDS:=3}" "${BENCH_DURATION:=6}" "${BENCH_BIG_SIZE:=1G}"
    BIG_TIMEOUT=20 SSE_EVENTS=40 MEM_CONTAINERS=50 LIFE_RUNS=30
fi
DUR=$BENCH_DURATION BIG_SIZE=$BENCH_BIG_SIZE WARM=$(( SMOKE ? 1 : 2 ))
START=$(date +%s) LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

for ns in brb-origin brb-hop brb-client; do
    if ip netns list | grep -qw "$ns"; then
        echo "error: namespace $ns exists: another compare.sh runs, or one was killed (remove it with: ip netns del $ns)" >&2
        exit 1
    fi
done

# Another engineer's apt may hold the lock for a while.
for _ in $(seq 30); do
    install_packages nginx squid-openssl mitmproxy wrk nghttp2-client curl jq runc \
        nftables iproute2 busybox-static openssl python3 binutils && break
    sleep 10
done

if [ -n "${BENCH_BIN:-}" ]; then
    BIN=$BENCH_BIN   # binaries built elsewhere (another commit, perf's build)
    REV="${BENCH_REV:-$("$BIN/boundary-runc" --version 2>/dev/null | tail -1)} (binaries from $BIN)"
else
    echo "==> scripts/build-release.sh (the shipped, statically linked build)"
    "$REPO/scripts/build-release.sh"
    BIN=${CARGO_TARGET_DIR:-$REPO/target}/release
    REV="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- proxy shim policy contract hooks || echo '+uncommitted changes')"
fi
for b in boundary-runc boundary-sidecar boundary-hook; do
    [ -x "$BIN/$b" ] || { echo "error: $BIN/$b is missing" >&2; exit 1; }
done

W=$(mktemp -d /tmp/boundary-compare.XXXXXX)
chmod 755 "$W"   # nginx workers and the sidecar worker run unprivileged
mkdir -p "$W/logs"
RESULTS=$W/results.tsv
: > "$RESULTS"
PIDS=()

. bench/compare/world.sh
. bench/compare/jail.sh
. bench/compare/scenarios.sh
. bench/compare/startup.sh

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    echo "==> cleaning up"
    teardown_brc
    teardown_startup
    teardown_world
    if [ -n "${BENCH_LOGS:-}" ]; then mkdir -p "$BENCH_LOGS" && cp -r "$W/logs" "$W/results.tsv" "$BENCH_LOGS/" 2>/dev/null || true; fi
    rm -rf "$W"
    local left
    left=$(ip netns list | grep -c '^brb-' || true)
    [ "$left" = 0 ] || echo "warning: $left brb-* namespaces left" >&2
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "==> namespaces, origin, squid, mitmproxy, boundary-runc jails"
build_namespaces
start_origin
start_squid
start_mitm
setup_brc

PEERS=(direct squid mitmproxy boundary-runc)
# Before the check below sends the jail its first requests (a worker that
# served gives its pages back only after 10 s without traffic).
echo "==> scenario 8: an idle sidecar"
run_s8_idle

echo "==> each peer fetches the origin"
for p in "${PEERS[@]}" boundary-runc-10k; do
    for u in "$URL_HTTPS/1k" "$URL_HTTP/1k"; do
        if ! on_peer "$p" curl -sSf -o /dev/null --max-time 10 "$u"; then
            echo "error: $p cannot fetch $u; the setup is broken" >&2
            exit 1
        fi
    done
done


for round in $(seq 1 "$ROUNDS"); do
    # Each round starts with another peer, so slow drifts of the machine
    # do not always favour the same one.
    shift_by=$(( (round - 1) % ${#PEERS[@]} ))
    order=("${PEERS[@]:shift_by}" "${PEERS[@]:0:shift_by}")
    echo "==> round $round/$ROUNDS (order: ${order[*]})"
    for s in 1 2 3 4 5 6; do
        for p in "${order[@]}"; do
            if [ $s = 1 ] && [ "$p" = boundary-runc ]; then run_s1_sampled "$round"; else "run_s$s" "$p" "$round"; fi
        done
    done
    run_s7 _ "$round"
done

echo "==> scenario 8: $MEM_CONTAINERS idle jails"
run_s8_many
echo "==> scenario 9: start-up"
run_s9_run
run_s9_docker

# The machine and the peers' versions.
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
{
    echo "Machine: $(nproc) cores, $cpu, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r)."
    echo "Peers: $(nginx -v 2>&1 | sed 's/.*: //') (origin), squid $(squid -v | awk 'NR==1 { print $4 }') (squid-openssl),"
    echo "mitmproxy $(mitmdump --version | awk '/^Mitmproxy/ { print $2 }'), wrk $(wrk -v 2>&1 | awk 'NR==1 { print $2 }'),"
    echo "$(h2load --version | head -1), curl $(curl -V | awk 'NR==1 { print $2 }'), $(runc --version | head -1),"
    echo "Docker $(docker version -f '{{.Server.Version}}' 2>/dev/null || echo n/a), boundary-runc: $REV."
    echo "Medians of $ROUNDS round(s), ${DUR} s per load run after a ${WARM} s warm-up; big file $BIG_SIZE, curl"
    echo "stopped after ${BIG_TIMEOUT} s (MiB/s of what arrived). Load average at the start $LOAD_START, at the end"
    echo "$(cut -d' ' -f1-3 /proc/loadavg) (anything above ~0.5 is other work on the machine); the run took $(( ($(date +%s) - START) / 60 )) min."
    if awk -v l="${LOAD_START%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
        echo
        echo "**Other work loaded this machine during the run** (load average above half the cores): every"
        echo "figure is slowed by an unknown, varying share, and start-up times and latencies most of all;"
        echo "read the ratios of throughput rows as rough, and rerun on an idle machine before relying on them."
    fi
} > "$W/machine.md"

title="boundary-runc vs squid, mitmproxy and no proxy ($(date -u +%Y-%m-%dT%H:%MZ))"
/usr/bin/python3 bench/compare/report.py "$RESULTS" "$W/machine.md" "$title" "$MEM_CONTAINERS" > "$W/table.md"
echo
cat "$W/table.md"
if [ $WRITE = 1 ]; then
    /usr/bin/python3 - "$W/table.md" docs/benchmarks.md <<'PY'
import sys
table, doc = open(sys.argv[1]).read().rstrip(), sys.argv[2]
text = open(doc).read()
begin, end = "<!-- bench/compare.sh: begin -->", "<!-- bench/compare.sh: end -->"
block = f"{begin}\n{table}\n{end}"
if begin in text and end in text:
    text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
else:
    text = text.rstrip() + "\n\n" + block + "\n"
open(doc, "w").write(text)
PY
    echo "(written to docs/benchmarks.md)"
fi
