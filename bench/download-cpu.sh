#!/usr/bin/env bash
# CPU per byte of the sidecar's big-download path, two builds side by side:
# both builds' sidecars run at once (bench/sidecar.sh --hold --bin A
# --against B, nginx origin on loopback); each round downloads the 64 MiB
# file four times over one connection through each (the order alternating
# between rounds) and reads, from /proc, the user + system CPU ticks of
# that build's sidecar processes and of nginx around it. Prints the medians
# per build: sidecar ms per 256 MiB, nginx ms, MiB/s. utime/stime tick at
# 10 ms, so use enough rounds; CPU per byte moves less with the machine's
# load than MiB/s does.
#
#   sudo bench/download-cpu.sh A/boundary-sidecar B/boundary-sidecar [ROUNDS]
set -euo pipefail
A=${1:?usage: download-cpu.sh BIN_A BIN_B [ROUNDS]} B=${2:?usage: download-cpu.sh BIN_A BIN_B [ROUNDS]} N=${3:-10}
for b in "$A" "$B"; do [ -x "$b" ] || { echo "no sidecar binary at $b" >&2; exit 1; }; done
A=$(readlink -f "$A") B=$(readlink -f "$B")
[ "$A" != "$B" ] || { echo "A and B are the same file; copy one to compare a build with itself" >&2; exit 2; }
cd "$(dirname "$0")/.."
log=$(mktemp)
bash bench/sidecar.sh --hold --bin "$A" --against "$B" --only big > "$log" 2>&1 &
hold=$!
trap 'pkill -P $hold sleep 2>/dev/null; wait $hold 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 90); do grep -q READY "$log" && break; kill -0 $hold 2>/dev/null || break; sleep 1; done
grep -q READY "$log" || { cat "$log" >&2; exit 1; }
tick=$(getconf CLK_TCK)
ticks_of_exe() {   # all processes whose executable is $1
    local t=0 p
    for p in $(pgrep -f boundary-sidecar); do
        [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$1" ] || continue
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo $t
}
ticks_of_nginx() { local p t=0; for p in $(pgrep -x nginx); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }
url=https://localhost:18443/big
rows=$(mktemp)
for r in $(seq "$N"); do
    if [ $((r % 2)) = 1 ]; then order="A:$A:15380 B:$B:15480"; else order="B:$B:15480 A:$A:15380"; fi
    for one in $order; do
        IFS=: read -r name bin port <<< "$one"
        c0=$(ticks_of_exe "$bin") n0=$(ticks_of_nginx) t0=$(date +%s.%N)
        curl -skf -o /dev/null -o /dev/null -o /dev/null -o /dev/null --connect-to "localhost:18443:127.0.0.1:$port" "$url" "$url" "$url" "$url"
        t1=$(date +%s.%N) c1=$(ticks_of_exe "$bin") n1=$(ticks_of_nginx)
        echo "$name $(( (c1 - c0) * 1000 / tick )) $(( (n1 - n0) * 1000 / tick )) $(python3 -c "print(round(256 / ($t1 - $t0)))")" >> "$rows"
    done
done
python3 - "$rows" "$A" "$B" <<'PY'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"{'build':6} {'sidecar ms/256MiB':>18} {'nginx ms':>9} {'MiB/s':>7}   (medians of {len(rows) // 2} rounds)")
for name, path in (("A", sys.argv[2]), ("B", sys.argv[3])):
    r = [list(map(int, x[1:])) for x in rows if x[0] == name]
    print(f"{name:6} {st.median(x[0] for x in r):>18} {st.median(x[1] for x in r):>9} {st.median(x[2] for x in r):>7}   {path}")
PY
rm -f "$rows"
