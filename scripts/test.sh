#!/usr/bin/env bash
# Runs the whole test suite: unit and golden tests of every crate, the
# in-process proxy tests, and the root end-to-end tests against real runc,
# crun, network namespaces, nftables and TLS. Run as root on Debian: it
# installs what the tests need with apt-get first. Ends with one line
# `total: N passed, M failed`.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root
need_cargo
install_packages runc crun nftables iproute2 busybox-static curl ca-certificates docker.io containerd podman containernetworking-plugins catatonit iptables

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

echo "==> build"
cargo build --workspace --bins --tests --quiet || { echo "total: 0 passed, 1 failed (build)"; exit 1; }

echo "==> unit, golden and in-process tests"
cargo test --workspace --exclude boundary-tests --no-fail-fast --quiet 2>&1 | tee "$logs/unit.log"
unit_rc=${PIPESTATUS[0]}

# Benchmarks are built and each is run once, untimed (criterion's test
# mode): a benchmark that no longer builds or panics fails here; no test
# depends on this machine's speed.
# Named one by one: `--benches` would run every library's unit tests again.
benches=$(awk '/^\[\[bench\]\]/ { b = 1; next } b && /^name *=/ { gsub(/[" ]/, ""); sub("name=", ""); printf "--bench %s ", $0; b = 0 }' */Cargo.toml)
echo "==> benchmarks: built and run once each, untimed (cargo test $benches)"
# shellcheck disable=SC2086 # one word per flag
cargo test --workspace --exclude boundary-tests $benches --quiet 2>&1 | tee "$logs/bench.log"
bench_rc=${PIPESTATUS[0]}
bench_passed=$(grep -c '^Success$' "$logs/bench.log")
bench_failed=0
if [ "$bench_rc" != 0 ] || [ "$bench_passed" = 0 ]; then bench_failed=1; fi

echo "==> root end-to-end tests (real runc/crun, namespaces, nftables)"
cargo test -p boundary-tests --no-fail-fast --quiet -- --test-threads=2 2>&1 | tee "$logs/root.log"
root_rc=${PIPESTATUS[0]}

echo "==> fuzzing: every cargo-fuzz target for ${FUZZ_SECONDS:-60} s (fuzz/run-all.sh; FUZZ_SECONDS=0 skips, and says so)"
fuzz_passed=0; fuzz_failed=0
if [ "${FUZZ_SECONDS:-60}" = 0 ]; then
    echo "    SKIPPED on request (FUZZ_SECONDS=0): fuzz targets were not run"
else
    fuzz/run-all.sh "${FUZZ_SECONDS:-60}" 2>&1 | tee "$logs/fuzz.log"
    fuzz_rc=${PIPESTATUS[0]}
    # One line per target in the summary that closes the script's output.
    sed -n '/^==> summary/,$p' "$logs/fuzz.log" >"$logs/fuzz-summary.log"
    fuzz_passed=$(grep -cE '^    [a-z_]+ +rc=0 ' "$logs/fuzz-summary.log")
    fuzz_failed=$(grep -cE '^    [a-z_]+ +rc=[1-9]' "$logs/fuzz-summary.log")
    if [ "$fuzz_rc" != 0 ] && [ "$fuzz_failed" = 0 ]; then fuzz_failed=1; fi
fi

count() { # file field -> sum of "N <field>" in cargo's result lines
    grep -h '^test result:' "$1" | grep -o "[0-9]* $2" | awk '{s+=$1} END {print s+0}'
}
up=$(count "$logs/unit.log" passed); uf=$(count "$logs/unit.log" failed)
rp=$(count "$logs/root.log" passed); rf=$(count "$logs/root.log" failed)
echo "==> unit/golden/in-process: $up passed, $uf failed; benchmarks run once: $bench_passed passed, $bench_failed failed; root end-to-end: $rp passed, $rf failed; fuzz targets: $fuzz_passed clean, $fuzz_failed failed"
passed=$((up + bench_passed + rp + fuzz_passed)); failed=$((uf + bench_failed + rf + fuzz_failed))
if [ "$unit_rc" != 0 ] || [ "$bench_failed" != 0 ] || [ "$root_rc" != 0 ] || [ "$fuzz_failed" != 0 ]; then
    echo "total: $passed passed, $((failed > 0 ? failed : 1)) failed"
    exit 1
fi
echo "total: $passed passed, $failed failed"
