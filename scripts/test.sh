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
install_packages runc crun nftables iproute2 busybox-static curl ca-certificates docker.io containerd

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

echo "==> build"
cargo build --workspace --bins --tests --quiet || { echo "total: 0 passed, 1 failed (build)"; exit 1; }

echo "==> unit, golden and in-process tests"
cargo test --workspace --exclude boundary-tests --no-fail-fast --quiet 2>&1 | tee "$logs/unit.log"
unit_rc=${PIPESTATUS[0]}

echo "==> root end-to-end tests (real runc/crun, namespaces, nftables)"
cargo test -p boundary-tests --no-fail-fast --quiet -- --test-threads=2 2>&1 | tee "$logs/root.log"
root_rc=${PIPESTATUS[0]}

count() { # file field -> sum of "N <field>" in cargo's result lines
    grep -h '^test result:' "$1" | grep -o "[0-9]* $2" | awk '{s+=$1} END {print s+0}'
}
up=$(count "$logs/unit.log" passed); uf=$(count "$logs/unit.log" failed)
rp=$(count "$logs/root.log" passed); rf=$(count "$logs/root.log" failed)
echo "==> unit/golden/in-process: $up passed, $uf failed; root end-to-end: $rp passed, $rf failed"
if [ "$unit_rc" != 0 ] || [ "$root_rc" != 0 ]; then
    echo "total: $((up + rp)) passed, $((uf + rf > 0 ? uf + rf : 1)) failed"
    exit 1
fi
echo "total: $((up + rp)) passed, $((uf + rf)) failed"
