#!/usr/bin/env bash
# Build every cargo-fuzz target of boundary-runc and run each for SECONDS
# (default 60). Exit status: 0 when no target found anything, 1 when a
# target crashed, hung or ran out of memory (its input is in
# fuzz/artifacts/<target>/), 2 on a setup error (bad argument, no
# cargo-fuzz, build failure).
#
#   fuzz/run-all.sh [SECONDS]
#
# Environment:
#   FUZZ_SANITIZER      address (default) or none; with the default, a build
#                       that fails under ASan is retried with none.
#   FUZZ_INPUT_TIMEOUT  seconds one input may run before it counts as a hang
#                       (default 10).
#   FUZZ_RSS_LIMIT_MB   memory limit, also the largest single allocation
#                       (default 2048).
#   FUZZ_TARGETS        space-separated subset of targets (default: all).
#   CARGO_TARGET_DIR    honoured as usual (default fuzz/target).
#
# The machine has stable Rust only: cargo-fuzz needs nightly flags
# (-Zsanitizer, -Cpasses=sancov-module), so RUSTC_BOOTSTRAP=1 is set here.
# New inputs libFuzzer finds go to fuzz/work/<target>/ (git-ignored, kept
# between runs); the committed seeds in fuzz/corpus/<target>/ are only read.
set -euo pipefail

seconds="${1:-60}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS]   (SECONDS: a positive integer, default 60)" >&2
    exit 2
fi

fuzz_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$fuzz_dir"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never
input_timeout="${FUZZ_INPUT_TIMEOUT:-10}"
rss_limit="${FUZZ_RSS_LIMIT_MB:-2048}"
logs="$fuzz_dir/work/logs"
mkdir -p "$logs"

say() { printf '==> %s\n' "$*"; }
now() { date +%s; }

ensure_cargo_fuzz() {
    if cargo fuzz --version >/dev/null 2>&1; then
        return
    fi
    say "cargo-fuzz is missing; installing it with cargo install"
    if ! cargo install cargo-fuzz --version '^0.13' --locked; then
        cargo install cargo-fuzz --version '^0.13' || {
            echo "error: cannot install cargo-fuzz" >&2
            exit 2
        }
    fi
}

# Sets $sanitizer to the first sanitizer the build works with.
build_all() {
    local candidates
    if [[ -n "${FUZZ_SANITIZER:-}" ]]; then
        candidates=("$FUZZ_SANITIZER")
    else
        candidates=(address none)
    fi
    for sanitizer in "${candidates[@]}"; do
        say "building all targets (sanitizer: $sanitizer)"
        if cargo fuzz build -s "$sanitizer" >"$logs/build-$sanitizer.log" 2>&1; then
            return
        fi
        tail -n 30 "$logs/build-$sanitizer.log" >&2
        say "build with sanitizer $sanitizer failed (log: $logs/build-$sanitizer.log)"
    done
    echo "error: the fuzz targets do not build" >&2
    exit 2
}

# stat NAME LOG: the value of libFuzzer's final "stat::NAME: value" line.
stat() {
    sed -n "s/^stat::$1: *//p" "$2" | tail -n 1
}

# cov LOG: "cov: N ft: N corp: N/size" from the last status line.
coverage() {
    grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$1" | tail -n 1 || true
}

ensure_cargo_fuzz
say "cargo-fuzz $(cargo fuzz --version 2>/dev/null | awk '{print $2}'), $(rustc --version)"
start=$(now)
build_all
built=$(now)
say "build took $((built - start)) s"

triple="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="${CARGO_TARGET_DIR:-$fuzz_dir/target}/$triple/release"

if [[ -n "${FUZZ_TARGETS:-}" ]]; then
    read -r -a targets <<<"$FUZZ_TARGETS"
else
    mapfile -t targets < <(cargo fuzz list)
fi

failed=()
summary=()
for target in "${targets[@]}"; do
    work="$fuzz_dir/work/$target"
    seeds="$fuzz_dir/corpus/$target"
    mkdir -p "$work" "$seeds" "$fuzz_dir/artifacts/$target"
    log="$logs/$target.log"
    say "fuzzing $target for $seconds s (log: $log)"
    t0=$(now)
    set +e
    # The binary cargo fuzz built above, run as `cargo fuzz run` would run
    # it, but without a second build: under a tree that is being edited,
    # `cargo fuzz run` would rebuild inside the time budget.
    "$bin_dir/$target" -artifact_prefix="$fuzz_dir/artifacts/$target/" \
        -max_total_time="$seconds" -timeout="$input_timeout" \
        -rss_limit_mb="$rss_limit" -print_final_stats=1 \
        "$work" "$seeds" >"$log" 2>&1
    rc=$?
    set -e
    runs=$(stat number_of_executed_units "$log")
    speed=$(stat average_exec_per_sec "$log")
    line="$(printf '%-18s rc=%-3s %4ss runs=%-10s exec/s=%-7s %s' \
        "$target" "$rc" "$(($(now) - t0))" "${runs:-?}" "${speed:-?}" "$(coverage "$log")")"
    summary+=("$line")
    echo "    $line"
    if [[ $rc -ne 0 ]]; then
        failed+=("$target")
        echo "---- $target failed (exit $rc); end of its log:" >&2
        tail -n 40 "$log" >&2
        echo "---- inputs that failed:" >&2
        ls -l "$fuzz_dir/artifacts/$target" >&2 || true
    fi
done

say "summary (sanitizer: $sanitizer, build $((built - start)) s, total $(($(now) - start)) s)"
printf '    %s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
    say "FAILED: ${failed[*]}"
    say "reproduce: cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -s $sanitizer <target> artifacts/<target>/<file>"
    exit 1
fi
say "all ${#targets[@]} targets ran clean"
