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
# boundary-hook is linked against musl instead when the toolchain can
# (the `x86_64-unknown-linux-musl` Rust target and `musl-gcc` from
# musl-tools, for ring's C): runc runs it twice per container (the gate and
# poststop hooks) and waits for each, and a static glibc start probes the
# CPU with ~75 `cpuid`s, which trap to the hypervisor on a VM: 0.67 ms
# from exec to exit for an empty static-glibc program against 0.40 ms for
# musl here, and each hook ~0.35 ms shorter on `run`'s path
# (docs/benchmarks.md). The runtime and the sidecar stay on glibc: the
# runtime's JSON work and the proxy's allocations gain nothing from musl's
# allocator. Without the musl toolchain the hook is static glibc too.
#
#   scripts/build-release.sh            (no root needed)
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
out=$target_dir/release
musl=x86_64-unknown-linux-musl
command -v readelf >/dev/null || { echo "error: readelf is missing (apt-get install binutils); it checks that the binaries are static" >&2; exit 1; }

# A static-pie binary has no PT_INTERP program header. (readelf comes with
# binutils, which the Rust toolchain's linker needs anyway.)
check_static() {
    if readelf -lW "$1" | grep -q INTERP; then
        echo "error: $1 is dynamically linked (it names a program interpreter); the static link did not take" >&2
        exit 1
    fi
}

musl_ready() {
    [ "$(uname -m)" = x86_64 ] && command -v musl-gcc >/dev/null &&
        rustc --print sysroot >/dev/null 2>&1 &&
        [ -d "$(rustc --print sysroot)/lib/rustlib/$musl" ]
}

hook_libc=glibc
for pkg_bin in boundary-runc:boundary-runc boundary-hook:boundary-hook boundary-proxy:boundary-sidecar; do
    pkg=${pkg_bin%%:*} bin=${pkg_bin##*:}
    if [ "$bin" = boundary-hook ] && [ "${BOUNDARY_HOOK_LIBC:-musl}" = musl ] && musl_ready; then
        # musl targets link statically (and as static-pie) by default.
        CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --quiet --target "$musl" -p "$pkg" --bin "$bin"
        install -m 0755 "$target_dir/$musl/release/$bin" "$out/$bin"
        hook_libc=musl
    else
        cargo rustc --release --quiet -p "$pkg" --bin "$bin" -- -C target-feature=+crt-static
    fi
    check_static "$out/$bin"
done
echo "built (static-pie): $out/boundary-runc $out/boundary-hook ($hook_libc) $out/boundary-sidecar"
if [ "$hook_libc" = glibc ] && [ "${BOUNDARY_HOOK_LIBC:-musl}" = musl ]; then
    echo "note: boundary-hook is static glibc; with musl-tools and \`rustup target add $musl\` it starts ~0.3 ms faster per hook" >&2
fi
