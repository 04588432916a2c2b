#!/usr/bin/env bash
# Where a container start spends its wall time, phase by phase: `runc run`
# of /bin/true and `boundary-runc run` of the same bundle, alternated,
# under `perf record` of the scheduler's exec, fork, exit and switch
# events; then the median of each phase over the runs, side by side, and
# which processes had the CPUs while runc started up. Nothing is written
# to docs/.
#
#   sudo bench/timeline.sh [--runs N] [--gap MS] DIR
#
# DIR holds boundary-runc, boundary-sidecar and boundary-hook. --gap is the
# pause after each run (default 150 ms), so each run's trace is its own
# (bench/ab.sh runs them back to back instead, as a benchmark should).
# perf's own work slows every run a little; compare the two rows, not the
# figures with bench/ab.sh's.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root
runs=12 gap=150 dir=""
while [ $# -gt 0 ]; do
    case $1 in
        --runs) runs=$2; shift ;;
        --gap) gap=$2; shift ;;
        -*) echo "usage: $0 [--runs N] [--gap MS] DIR" >&2; exit 2 ;;
        *) dir=$(cd "$1" && pwd) ;;
    esac
    shift
done
[ -n "$dir" ] || { echo "usage: $0 [--runs N] [--gap MS] DIR" >&2; exit 2; }
for b in boundary-runc boundary-sidecar boundary-hook; do
    [ -x "$dir/$b" ] || { echo "error: no $b in $dir" >&2; exit 1; }
done
install_packages runc nftables iproute2 busybox-static python3 linux-perf
work=$(mktemp -d /tmp/boundary-timeline.XXXXXX)
trap 'umount "$work/state/netns" "$work/state/userns" 2>/dev/null || true; rm -rf "$work"' EXIT
true_bundle "$work"
bench_config "$work/config.toml" "$work/state" 10.217.0.0/16 "$work"
cat > "$work/loop.py" <<'PY'
import os, shutil, subprocess, sys, time
work, runs, gap, shim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) / 1000, sys.argv[4]
bundle = os.path.join(work, "bundle")
env = dict(os.environ, BOUNDARY_RUNC_CONFIG=os.path.join(work, "config.toml"))
for r in range(runs + 2):
    for cmd in (["runc", "run", "-b", bundle, f"tl-r{r}"], [shim, "run", "-b", bundle, f"tl-b{r}"]):
        shutil.copy(os.path.join(work, "pristine.json"), os.path.join(bundle, "config.json"))
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        if res.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed: {res.stderr.decode(errors='replace')}")
        time.sleep(gap)
PY
# The first run makes the host CA: not part of any measured run.
cp "$work/pristine.json" "$work/bundle/config.json"
BOUNDARY_RUNC_CONFIG="$work/config.toml" "$dir/boundary-runc" run -b "$work/bundle" tl-warm < /dev/null > /dev/null
perf record -q -o "$work/perf.data" -e sched:sched_process_exec -e sched:sched_process_fork \
    -e sched:sched_process_exit -e sched:sched_switch -a -- python3 "$work/loop.py" "$work" "$runs" "$gap" "$dir/boundary-runc" 2> "$work/perf.err" \
    || { cat "$work/perf.err" >&2; exit 1; }
perf script -i "$work/perf.data" -F comm,pid,tid,cpu,time,event,trace 2> /dev/null > "$work/perf.txt"
python3 bench/timeline.py "$work/perf.txt" "$dir/boundary-runc" 2
