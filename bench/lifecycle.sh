#!/usr/bin/env bash
# Measures boundary-runc against plain runc, side by side in one run:
#   1. pass-through overhead: `state` of a created container;
#   2. `run` of /bin/true (jail + sidecar + poststop teardown vs plain);
#   3. create + start + delete of /bin/true.
# Prints medians and ratios and appends them to docs/benchmarks.md with the
# machine's description. Run as root: sudo bench/lifecycle.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root
install_packages runc nftables iproute2 busybox-static curl hyperfine python3
runs=${1:-30}

cargo build --release --workspace --bins --quiet
bin=$PWD/target/release
work=$(mktemp -d /tmp/boundary-bench.XXXXXX)
trap 'runc delete -f bench-state >/dev/null 2>&1 || true; umount "$work/state/netns" 2>/dev/null || true; rm -rf "$work"' EXIT
build_rootfs "$work/bundle/rootfs"
write_demo_spec "$work/bundle/config.json" "true"
cp "$work/bundle/config.json" "$work/pristine.json"
cat > "$work/config.toml" <<CONF
state_root = "$work/state"
[network]
pool = "10.214.0.0/16"
[tls]
ca_dir = "$work/ca"
[audit]
dir = "$work/audit"
CONF
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
cpu = next((l.split(":",1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"\nMachine: {os.cpu_count()} cores, {cpu}, kernel {platform.release()}. Jail leftovers after the run: {leftover}.")
PY
{
  echo
  echo "<!-- bench/lifecycle.sh $(date -u +%Y-%m-%dT%H:%MZ) -->"
  cat "$work/table.md"
} >> docs/benchmarks.md
echo "(appended to docs/benchmarks.md)"
