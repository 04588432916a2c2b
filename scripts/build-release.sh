#!/usr/bin/env bash
# Builds the three shipped binaries (boundary-runc, boundary-hook,
# boundary-sidecar) in release mode, statically linked against glibc
# (static-pie: still position-independent, so still randomised), into
# target/release (or $CARGO_TARGET_DIR/release), and checks that none of
# them needs the dynamic loader.
#
# Why static: every container start execs these binaries on its critical
# path (the runtime for each runc subcommand, the gate and poststop hooks,
# the sidecar), and a dynamic Rust binary spends ~0.6 ms per exec in the
# loader (mapping libc, libm and libgcc_s, relocating, resolving ifuncs);
# `run` of /bin/true measured ~3-5 ms faster (docs/benchmarks.md). runc's
# own release binaries are static too. The price: a glibc fix needs a
# rebuild of these binaries, not only a system update.
#
# Only the final link of each binary gets `-C target-feature=+crt-static`
# (`cargo rustc` passes extra flags to the binary crate alone): in
# RUSTFLAGS it would also reach proc-macro crates, which cannot be static.
#
#   scripts/build-release.sh            (no root needed)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${CARGO_TARGET_DIR:-$PWD/target}/release
command -v readelf >/dev/null || { echo "error: readelf is missing (apt-get install binutils); it checks that the binaries are static" >&2; exit 1; }
for pkg_bin in boundary-runc:boundary-runc boundary-hook:boundary-hook boundary-proxy:boundary-sidecar; do
    pkg=${pkg_bin%%:*} bin=${pkg_bin##*:}
    cargo rustc --release --quiet -p "$pkg" --bin "$bin" -- -C target-feature=+crt-static
    # A static-pie binary has no PT_INTERP program header. (readelf comes
    # with binutils, which the Rust toolchain's linker needs anyway.)
    if readelf -lW "$out/$bin" | grep -q INTERP; then
        echo "error: $out/$bin is dynamically linked (it names a program interpreter); the static link did not take" >&2
        exit 1
    fi
done
echo "built (static-pie): $out/boundary-runc $out/boundary-hook $out/boundary-sidecar"
