#!/usr/bin/env bash
# Interleaved A/B of container start-up: `runc run` of /bin/true against
# `boundary-runc run` of the same bundle from each directory of binaries
# given, one after another in every round (so all see the same load), and
# with --docker also `docker run --rm` with the default runtime against
# each directory registered as a runtime. Prints medians, quartiles and
# ratios to runc; nothing is written to docs/.
#
#   sudo bench/ab.sh [--runs N] [--docker] DIR...
#   e.g. sudo bench/ab.sh --runs 40 --docker /tmp/old/release target/release
#
# Each DIR holds boundary-runc, boundary-sidecar and boundary-hook (a
# `cargo build --release` target directory, or a copy of one).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root
runs=40 docker=0 dirs=()
while [ $# -gt 0 ]; do
    case $1 in
        --runs) runs=$2; shift ;;
        --docker) docker=1 ;;
        -*) echo "usage: $0 [--runs N] [--docker] DIR..." >&2; exit 2 ;;
        *) dirs+=("$(cd "$1" && pwd)") ;;
    esac
    shift
done
[ ${#dirs[@]} -gt 0 ] || { echo "usage: $0 [--runs N] [--docker] DIR..." >&2; exit 2; }
install_packages runc nftables iproute2 busybox-static python3 jq
work=$(mktemp -d /tmp/boundary-ab.XXXXXX)
registered=()
trap 'builds_cleanup "$work" boundary-ab-true' EXIT
true_bundle "$work"
for i in "${!dirs[@]}"; do
    bench_config "$work/config$i.toml" "$work/state$i" "10.$((218 + i)).0.0/16" "$work"
    # Docker runs the runtime with no way to pass the config's path but
    # the environment: a wrapper, the same for every directory (and a
    # runc behind the same wrapper is measured too, for its cost).
    printf '#!/bin/sh\nBOUNDARY_RUNC_CONFIG=%s exec %s "$@"\n' "$work/config$i.toml" "${dirs[$i]}/boundary-runc" > "$work/rt$i.sh"
    chmod 755 "$work/rt$i.sh"
done
printf '#!/bin/sh\nexec runc "$@"\n' > "$work/runc.sh"
chmod 755 "$work/runc.sh"
if [ "$docker" = 1 ]; then
    docker info > /dev/null 2>&1 || { echo "dockerd does not answer (start it, or leave out --docker)" >&2; exit 1; }
    true_image "$work" boundary-ab-true
    registered=(boundary-ab-runc)
    docker_runtime add boundary-ab-runc "$work/runc.sh"
    for i in "${!dirs[@]}"; do
        registered+=("boundary-ab-$i")
        docker_runtime add "boundary-ab-$i" "$work/rt$i.sh"
    done
fi
python3 - "$work" "$runs" "$docker" "${dirs[@]}" <<'PY'
import os, shutil, statistics, subprocess, sys, time
work, runs, docker, dirs = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4:]
bundle = os.path.join(work, "bundle")

def timed(cmd, env=None):
    t = time.perf_counter()
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    d = (time.perf_counter() - t) * 1000
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {r.stderr.decode(errors='replace')}")
    return d

def report(title, rows, warmup):
    base = statistics.median(rows[0][1])
    print(f"\n{title} ({runs} interleaved rounds, after {warmup} warm-up rounds)\n")
    print("| | median | p25 | p75 | vs first row |")
    print("|---|---|---|---|---|")
    for name, v in rows:
        q = statistics.quantiles(v, n=4)
        m = statistics.median(v)
        print(f"| {name} | {m:.1f} ms | {q[0]:.1f} | {q[2]:.1f} | {m / base:.2f}x ({m - base:+.1f} ms) |")

cases = [("runc run", ["runc", "run", "-b", bundle, "ab-r"], None)]
for i, d in enumerate(dirs):
    env = dict(os.environ, BOUNDARY_RUNC_CONFIG=os.path.join(work, f"config{i}.toml"))
    cases.append((f"boundary-runc run ({d})", [os.path.join(d, "boundary-runc"), "run", "-b", bundle, f"ab-{i}"], env))
times = {c[0]: [] for c in cases}
for r in range(runs + 3):
    for name, cmd, env in cases:
        shutil.copy(os.path.join(work, "pristine.json"), os.path.join(bundle, "config.json"))
        d = timed(cmd, env)
        if r >= 3:
            times[name].append(d)
report("`run` of /bin/true", [(c[0], times[c[0]]) for c in cases], 3)

if docker:
    rts = [("docker run --rm (runc)", None), ("docker run --rm (runc behind the wrapper)", "boundary-ab-runc")]
    rts += [(f"docker run --rm ({d})", f"boundary-ab-{i}") for i, d in enumerate(dirs)]
    times = {n: [] for n, _ in rts}
    for r in range(runs + 2):
        for name, rt in rts:
            cmd = ["docker", "run", "--rm"] + ([f"--runtime={rt}"] if rt else []) + ["boundary-ab-true", "/bin/true"]
            d = timed(cmd)
            if r >= 2:
                times[name].append(d)
    report("`docker run --rm` of /bin/true", [(n, times[n]) for n, _ in rts], 2)
PY
