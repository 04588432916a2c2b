#!/usr/bin/env bash
# Measures boundary-runc against plain runc, side by side in one run:
#   1. pass-through overhead: `state` of a created container;
#   2. `run` of /bin/true (jail + sidecar + poststop teardown vs plain);
#   3. create + start + delete of /bin/true;
#   4. resident memory of idle sidecars (IDLE containers running `sleep`,
#      default 50): VmRSS and PSS of every sidecar process.
# Prints medians and ratios and adds them to the "Runtime lifecycle"
# section of docs/benchmarks.md with the machine's description.
# Run as root: sudo bench/lifecycle.sh [RUNS]   (honours CARGO_TARGET_DIR,
# BENCH_NO_BUILD=1 and IDLE=N; on a busy machine run it under `nice -n -20`)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root
install_packages runc nftables iproute2 busybox-static curl hyperfine python3 binutils
runs=${1:-30}
idle=${IDLE:-50}

# BENCH_NO_BUILD=1: measure the binaries already built.
[ -n "${BENCH_NO_BUILD:-}" ] || scripts/build-release.sh
bin=${CARGO_TARGET_DIR:-$PWD/target}/release
work=$(mktemp -d /tmp/boundary-bench.XXXXXX)
cleanup() {
    runc delete -f bench-state >/dev/null 2>&1 || true
    for i in $(seq 1 "$idle"); do "$bin/boundary-runc" delete -f "idle$i" >/dev/null 2>&1 || true; done
    umount "$work/state/netns" "$work/state/userns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
true_bundle "$work"
bench_config "$work/config.toml" "$work/state" 10.214.0.0/16 "$work"
export BOUNDARY_RUNC_CONFIG=$work/config.toml
B=$work/bundle

# A created (not started) container for `state`.
runc create -b "$B" bench-state >/dev/null
hyperfine -N --warmup 5 --runs "$runs" --export-json "$work/state.json" \
    -n "runc state" "runc state bench-state" \
    -n "boundary-runc state" "$bin/boundary-runc state bench-state" >/dev/null
runc delete -f bench-state

# Each `run` rewrites config.json; restore the pristine one before each.
hyperfine --warmup 3 --runs "$runs" --export-json "$work/run.json" \
    --prepare "cp $work/pristine.json $B/config.json" \
    -n "runc run /bin/true" "runc run -b $B r\$\$" \
    -n "boundary-runc run /bin/true" "$bin/boundary-runc run -b $B b\$\$" >/dev/null

hyperfine --warmup 3 --runs "$runs" --export-json "$work/cycle.json" \
    --prepare "cp $work/pristine.json $B/config.json" \
    -n "runc create+start+delete" "id=r\$\$; runc create -b $B \$id && runc start \$id && runc delete -f \$id" \
    -n "boundary-runc create+start+delete" "id=b\$\$; $bin/boundary-runc create -b $B \$id && $bin/boundary-runc start \$id && $bin/boundary-runc delete -f \$id" >/dev/null

leftover=$(ls "$work/state/netns" 2>/dev/null | wc -l)

# Idle sidecars: $idle containers running `sleep`, then every sidecar
# process's VmRSS and PSS (shared pages divided among their users).
mkdir -p "$work/idle"
python3 - "$work/pristine.json" "$B/rootfs" > "$work/idle.json" <<'PY'
import json, sys
spec = json.load(open(sys.argv[1]))
spec["process"]["args"] = ["sleep", "600"]
spec["root"]["path"] = sys.argv[2]
print(json.dumps(spec, indent=2))
PY
for i in $(seq 1 "$idle"); do
    cp "$work/idle.json" "$work/idle/config.json"
    "$bin/boundary-runc" run -d -b "$work/idle" "idle$i" </dev/null >/dev/null 2>&1
done
sleep 2
python3 - "$work/state" "$idle" > "$work/rss.json" <<'PY'
import json, os, sys
root, n = sys.argv[1], int(sys.argv[2])
def field(path, name):
    for line in open(path):
        if line.startswith(name):
            return int(line.split()[1])
    return 0
rss = pss = procs = 0
for i in range(1, n + 1):
    pids = json.load(open(os.path.join(root, f"idle{i}", "sidecar.pids")))
    for p in {pids.get("keeper"), pids.get("supervisor"), pids.get("worker")} - {None}:
        rss += field(f"/proc/{p}/status", "VmRSS:")
        pss += field(f"/proc/{p}/smaps_rollup", "Pss:")
        procs += 1
print(json.dumps({"sidecars": n, "procs": procs, "rss_kib": rss, "pss_kib": pss}))
PY
for i in $(seq 1 "$idle"); do "$bin/boundary-runc" delete -f "idle$i" >/dev/null 2>&1 || true; done

python3 - "$work" "$runs" "$leftover" <<'PY' | tee "$work/table.md"
import json, sys, platform, os
work, runs, leftover = sys.argv[1], sys.argv[2], sys.argv[3]
print(f"### Lifecycle and pass-through ({runs} runs each, medians)\n")
print("| scenario | runc | boundary-runc | ratio | added |")
print("|---|---|---|---|---|")
for f, name in [("state.json", "`state` (pass-through, one execve)"), ("run.json", "`run` of /bin/true"), ("cycle.json", "create + start + delete of /bin/true")]:
    r = json.load(open(os.path.join(work, f)))["results"]
    a, b = r[0]["median"], r[1]["median"]
    print(f"| {name} | {a*1000:.2f} ms | {b*1000:.2f} ms | {b/a:.2f}x | {(b-a)*1000:+.2f} ms |")
m = json.load(open(os.path.join(work, "rss.json")))
n = m["sidecars"]
print(f"\nIdle sidecars ({n}, {m['procs']} processes): VmRSS {m['rss_kib']/n/1024:.2f} MiB per sidecar, {m['rss_kib']/1024:.1f} MiB in all; "
      f"PSS {m['pss_kib']/n/1024:.2f} MiB per sidecar, {m['pss_kib']/1024:.1f} MiB in all.")
cpu = next((l.split(":",1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"\nMachine: {os.cpu_count()} cores, {cpu}, kernel {platform.release()}. Jail leftovers after the run: {leftover}.")
PY
# Into the "Runtime lifecycle" section: before the next "## " heading.
python3 - docs/benchmarks.md "$work/table.md" "$(date -u +%Y-%m-%dT%H:%MZ)" <<'PY'
import sys
doc, table, stamp = sys.argv[1], open(sys.argv[2]).read(), sys.argv[3]
text = open(doc).read()
block = f"<!-- bench/lifecycle.sh {stamp} -->\n{table.rstrip()}\n\n"
start = text.find("## Runtime lifecycle")
nxt = text.find("\n## ", start + 1) if start >= 0 else -1
if nxt < 0:
    text = text.rstrip("\n") + "\n\n" + block
else:
    text = text[:nxt + 1] + block + text[nxt + 1:]
open(doc, "w").write(text)
PY
echo "(added to docs/benchmarks.md)"
