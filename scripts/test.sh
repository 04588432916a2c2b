#!/usr/bin/env bash
# Runs the whole test suite: unit and golden tests of every crate, the
# in-process proxy tests, and the root end-to-end tests against real runc,
# crun, network namespaces, nftables and TLS. Run as root on Debian: it
# installs what the tests need with apt-get first.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root
install_packages runc crun nftables iproute2 busybox-static curl ca-certificates

echo "==> build"
cargo build --workspace --bins --tests --quiet

echo "==> unit, golden and in-process tests"
cargo test --workspace --exclude boundary-tests --no-fail-fast --quiet

echo "==> root end-to-end tests (real runc/crun, namespaces, nftables)"
cargo test -p boundary-tests --no-fail-fast --quiet -- --test-threads=2
