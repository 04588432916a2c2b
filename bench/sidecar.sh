#!/usr/bin/env bash
# Sidecar request path alone: the real boundary-sidecar (keeper ->
# supervisor -> worker) in the current network namespace on 127.0.0.1, an
# nginx origin on 127.0.0.1 (plain :18080, TLS :18443), driven by wrk /
# h2load. Loopback only; no jail, no nftables.
#
#   sudo bench/sidecar.sh [--bin PATH] [--runs N] [--secs S] [--conns C]
#   sudo bench/sidecar.sh --callgrind [--bin PATH] [--requests N]
#   --only "a b": scenarios (http-1k https-1k h2-1k big). --origin-h1: the origin's TLS
#   port offers no HTTP/2, so HTTPS upstream is HTTP/1.1 as plain HTTP is
#   (not with h2-1k, whose direct run needs h2). --against PATH: a second
#   build's boundary-sidecar runs beside the first (its own port), and
#   each scenario's runs interleave direct, --bin and --against, so both
#   builds meet the same load; the table adds its column and bin/against.
#   --against-rules FILE: the --against sidecar's allow rules, one per
#   line (default: the same single rule, domain=localhost); with --bin
#   given again as --against, this measures the cost of a policy.
#   --hold: set up, print READY and the directory, and wait (for perf).
#   --cpu: also the worker's CPU (user + system, from /proc) per request
#   in the wrk scenarios (http-1k, https-1k), median over the runs, for
#   --bin and --against: unlike req/s, it does not move with how the
#   client and the origin share the cores, so it shows small changes.
#
# Throughput mode prints, per scenario, the median req/s of N runs direct
# (wrk/h2load -> nginx) and through the sidecar, and their ratio. Callgrind
# mode runs the worker alone under valgrind, sends N keep-alive requests
# per scenario with h2load and prints user-space instructions per request
# (a worker life with N requests minus an idle one, divided by N).
# --bin compares builds: pass each build's boundary-sidecar in turn.
set -euo pipefail

BIN=${BIN:-/work/target-throughput/release/boundary-sidecar}
RUNS=5 SECS=5 CONNS=64 CALLGRIND=0 REQUESTS=2000 ONLY="" ORIGIN_H2=" http2" AGAINST="" AGAINST_RULES="" HOLD=0 CPU=0
while [ $# -gt 0 ]; do
    case $1 in
        --bin) BIN=$2; shift ;;
        --runs) RUNS=$2; shift ;;
        --secs) SECS=$2; shift ;;
        --conns) CONNS=$2; shift ;;
        --callgrind) CALLGRIND=1 ;;
        --requests) REQUESTS=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --origin-h1) ORIGIN_H2="" ;;
        --against) AGAINST=$2; shift ;;
        --against-rules) AGAINST_RULES=$2; shift ;;
        --hold) HOLD=1 ;;
        --cpu) CPU=1 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || { echo "needs root (the sidecar keeper drops privileges)" >&2; exit 1; }
for t in nginx wrk h2load openssl; do command -v $t >/dev/null || { echo "missing $t (apt-get install $t)" >&2; exit 1; }; done
[ -x "$BIN" ] || { echo "no sidecar binary at $BIN (cargo build --release -p boundary-proxy)" >&2; exit 1; }
[ -z "$AGAINST" ] || [ -x "$AGAINST" ] || { echo "no sidecar binary at $AGAINST (--against)" >&2; exit 1; }
[ -z "$AGAINST_RULES" ] || [ -n "$AGAINST" ] || { echo "--against-rules needs --against" >&2; exit 2; }
[ -z "$AGAINST_RULES" ] || [ -r "$AGAINST_RULES" ] || { echo "cannot read rules file $AGAINST_RULES" >&2; exit 1; }

PROXY_PORT=15380 DNS_PORT=15353 PLAIN=18080 TLSP=18443 AGAINST_PORT=15480
DIR=$(mktemp -d /tmp/bench-sidecar.XXXXXX)
KEEPER="" KEEPER_B=""
cleanup() {
    set +e
    [ -n "$KEEPER" ] && { kill "$KEEPER"; wait "$KEEPER"; } 2>/dev/null
    [ -n "$KEEPER_B" ] && { kill "$KEEPER_B"; wait "$KEEPER_B"; } 2>/dev/null
    [ -f "$DIR/nginx.pid" ] && kill "$(cat "$DIR/nginx.pid")" 2>/dev/null
    sleep 0.5
    [ -n "${KEEP:-}" ] || rm -rf "$DIR"
}
trap cleanup EXIT
trap "exit 1" INT TERM

# --- certificates: host CA (the sidecar's), origin CA and leaf (nginx's)
cd "$DIR"
chmod 755 "$DIR"   # nginx's workers (www-data) serve the files from here
q() { "$@" >/dev/null 2>&1; }
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout host-ca.key -out host-ca.pem -days 2 -subj /CN=bench-host-ca
q openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout origin-ca.key -out origin-ca.pem -days 2 -subj /CN=bench-origin-ca
q openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout origin.key -out origin.csr -subj /CN=localhost
printf 'subjectAltName=DNS:localhost\n' > san.ext
q openssl x509 -req -in origin.csr -CA origin-ca.pem -CAkey origin-ca.key -CAcreateserial -out origin.pem -days 2 -extfile san.ext

# --- origin
head -c 1024 /dev/zero | tr '\0' x > 1k
head -c $((64 * 1024 * 1024)) /dev/zero > big
mkdir -p logs
cat > nginx.conf <<EOF
worker_processes 1;
pid $DIR/nginx.pid;
error_log $DIR/logs/error.log error;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$PLAIN;
        listen 127.0.0.1:$TLSP ssl$ORIGIN_H2;
        ssl_certificate $DIR/origin.pem;
        ssl_certificate_key $DIR/origin.key;
        root $DIR;
    }
}
EOF
nginx -c "$DIR/nginx.conf" -p "$DIR"

# --- sidecar: config NAME PROXY_PORT DNS_PORT [RULES_JSON] (run/NAME and audit/NAME)
sidecar_config() {
    local rules=${4:-'["domain=localhost"]'}
    mkdir -p "run/$1" "audit/$1"
    chown 65534:65534 "audit/$1"
    cat > "$1.json" <<EOF
{
  "container_id": "bench-$1",
  "netns": null,
  "listen_addr": "127.0.0.1",
  "proxy_port": $2,
  "dns_port": $3,
  "rules": $rules,
  "ca_cert": "$DIR/host-ca.pem",
  "ca_key": "$DIR/host-ca.key",
  "upstream_system_roots": false,
  "upstream_ca_files": ["$DIR/origin-ca.pem"],
  "pinned_hosts": {"localhost": "127.0.0.1"},
  "upstream_enabled": true,
  "allow_special_destinations": true,
  "upstream_resolvers": ["127.0.0.1"],
  "audit_log": "$DIR/audit/$1/audit.jsonl",
  "uid": 65534,
  "gid": 65534,
  "pid_file": "$DIR/run/$1/sidecar.pid",
  "orphan_watch": null
}
EOF
}
mkdir -p audit run
sidecar_config sidecar $PROXY_PORT $DNS_PORT
if [ -n "$AGAINST_RULES" ]; then
    sidecar_config against $AGAINST_PORT $((DNS_PORT + 100)) "$(jq -R . "$AGAINST_RULES" | jq -s .)"
elif [ -n "$AGAINST" ]; then
    sidecar_config against $AGAINST_PORT $((DNS_PORT + 100))
fi

# Waits until the proxy answers: TRIES attempts, SLEEP s apart, each with
# a curl timeout of MAXTIME s; WHAT names it in the failure.
await_proxy() {
    local tries=$1 sleep=$2 maxtime=$3 what=$4 port=${5:-$PROXY_PORT}
    for _ in $(seq "$tries"); do
        curl -s -o /dev/null --max-time "$maxtime" -H "Host: localhost:$PLAIN" "http://127.0.0.1:$port/1k" && return 0
        sleep "$sleep"
    done
    echo "$what did not come up:" >&2; tail "$DIR/sidecar.log" >&2; exit 1
}
start_sidecar() {
    BOUNDARY_LOG=warn "$BIN" --config "$DIR/sidecar.json" 2>>"$DIR/sidecar.log" &
    KEEPER=$!
    await_proxy 100 0.1 1 sidecar
    if [ -n "$AGAINST" ]; then
        BOUNDARY_LOG=warn "$AGAINST" --config "$DIR/against.json" 2>>"$DIR/sidecar.log" &
        KEEPER_B=$!
        await_proxy 100 0.1 1 "sidecar (--against)" $AGAINST_PORT
    fi
}
stop_sidecar() { kill "$KEEPER"; wait "$KEEPER" 2>/dev/null || true; KEEPER=""; }
worker_pid() { sed -n 's/.*"worker": *\([0-9]*\).*/\1/p' "$DIR/run/${1:-sidecar}/sidecar.pid"; }

# Scenarios: name, direct target, proxied target. TLS through the proxy
# uses SNI "localhost" (wrk/h2load take it from the URL) and names the
# origin port in Host / :authority.
HDR="Host: localhost:"
wrk_rps() { wrk -t2 -c"$CONNS" -d"${SECS}s" "$@" 2>/dev/null | awk '/Requests\/sec/ {print int($2)}'; }
# With --cpu, through a sidecar: "req/s µs-of-worker-CPU-per-request".
# The worker's utime + stime are in clock ticks (getconf CLK_TCK).
TICK_US=$((1000000 / $(getconf CLK_TCK)))
worker_ticks() { awk '{print $14 + $15}' "/proc/$(worker_pid "$1")/stat"; }
wrk_rps_cpu() {   # port, wrk arguments
    local name=sidecar t0 t1 out
    [ "$1" = "$PROXY_PORT" ] || name=against
    shift
    t0=$(worker_ticks $name)
    out=$(wrk -t2 -c"$CONNS" -d"${SECS}s" "$@" 2>/dev/null)
    t1=$(worker_ticks $name)
    echo "$out" | awk -v t0="$t0" -v t1="$t1" -v us="$TICK_US" '
        /requests in/ {n = $1} /Requests\/sec/ {r = int($2)}
        END {printf "%d %.2f\n", r, (n > 0) ? (t1 - t0) * us / n : 0}'
}
# wrk through a sidecar (its port first): with --cpu also the worker's CPU.
wrk_proxied() { if [ "$CPU" = 1 ]; then wrk_rps_cpu "$@"; else shift; wrk_rps "$@"; fi; }
h2_rps() { h2load -c4 -m100 -D"$SECS" -t2 "$@" 2>/dev/null | awk '/^finished in/ {gsub(",","",$4); print int($4)}'; }
scenario() {   # name, direct | the proxy's port
    local p=$2
    case $1 in
        http-1k) if [ "$p" = direct ]; then wrk_rps "http://127.0.0.1:$PLAIN/1k"; else wrk_proxied "$p" -H "$HDR$PLAIN" "http://127.0.0.1:$p/1k"; fi ;;
        https-1k) if [ "$p" = direct ]; then wrk_rps "https://localhost:$TLSP/1k"; else wrk_proxied "$p" -H "$HDR$TLSP" "https://localhost:$p/1k"; fi ;;
        h2-1k) if [ "$p" = direct ]; then h2_rps "https://localhost:$TLSP/1k"; else h2_rps -H ":authority: localhost:$TLSP" "https://localhost:$p/1k"; fi ;;
        big) local t0 t1; t0=$(date +%s.%N)
             if [ "$p" = direct ]; then curl -skf -o /dev/null "https://localhost:$TLSP/big"; else curl -skf -o /dev/null --connect-to "localhost:$TLSP:127.0.0.1:$p" "https://localhost:$TLSP/big"; fi
             t1=$(date +%s.%N); echo "$t0 $t1" | awk '{printf "%d\n", 64 / ($2 - $1)}' ;;  # MiB/s
    esac
}
check_ok() {   # every scenario must see 200s, or its figures mean nothing
    local code
    code=$(curl -sk -o /dev/null -w '%{http_code}' -H "$HDR$2" "$1")
    [ "$code" = 200 ] || { echo "$1 (Host port $2) answered $code, not 200" >&2; exit 1; }
}
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : int((a[NR / 2] + a[NR / 2 + 1]) / 2)}'; }
median_f() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "-"; else printf "%.2f\n", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
field() { awk -v f="$1" 'NF >= f {print $f}'; }

SCENARIOS=${ONLY:-"http-1k https-1k h2-1k big"}

mkdir -p "$DIR/cg"; chown 65534:65534 "$DIR/cg"
worker_start() {   # name [valgrind]: the worker alone, at the supervisor's descriptors
    [ -n "${2:-}" ] && install -o 65534 -g 65534 -m 600 /dev/null "$DIR/cg/$1"   # written at exit, as the worker
    python3 - "$DIR" "$PROXY_PORT" "$DNS_PORT" "$BIN" "$1" "${2:-}" <<'PY' 2>>"$DIR/sidecar.log" &
import os, socket, sys
d, pp, dp, binary, name, vg = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
def tcp(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(1024); return s
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", dp))
fds = [tcp(pp).detach(), u.detach(), tcp(dp).detach(),
       os.open(d + "/audit/sidecar/audit.jsonl", os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)]
for target, fd in zip(range(3, 7), fds):
    os.dup2(fd, target + 10)
for target in range(3, 7):
    os.dup2(target + 10, target); os.close(target + 10); os.set_inheritable(target, True)
argv = [binary, "--worker", "--config", d + "/sidecar.json"]
if vg:
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + d + "/cg/" + name] + argv
os.execvp(argv[0], argv)
PY
    KEEPER=$!
    await_proxy 150 0.2 5 worker
}
if [ "$CALLGRIND" = 0 ]; then
    start_sidecar
    check_ok "http://127.0.0.1:$PROXY_PORT/1k" $PLAIN; check_ok "https://localhost:$PROXY_PORT/1k" $TLSP
    check_ok "https://localhost:$TLSP/1k" $TLSP
    [ -z "$AGAINST" ] || { check_ok "http://127.0.0.1:$AGAINST_PORT/1k" $PLAIN; check_ok "https://localhost:$AGAINST_PORT/1k" $TLSP; }
    if [ "$HOLD" = 1 ]; then echo "READY $DIR"; sleep infinity; fi
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0) ? a / b : 0}'; }
    if [ -z "$AGAINST" ]; then
        printf '%-9s %10s %10s %6s   (median of %s runs, %ss each, %s conns; big = MiB/s)\n' scenario direct sidecar ratio "$RUNS" "$SECS" "$CONNS"
    else
        printf '%-9s %10s %10s %10s %6s %6s %8s   (median of %s runs, %ss each, %s conns; big = MiB/s)\n' \
            scenario direct sidecar against ratio ratio-a bin/against "$RUNS" "$SECS" "$CONNS"
    fi
    for s in $SCENARIOS; do
        d=(); p=(); a=()
        for i in $(seq "$RUNS"); do   # interleaved, so load drift hits all
            d+=("$(scenario "$s" direct)")
            # --bin and --against take turns at running right after direct.
            # An A/A run (the same binary as both, 8 runs) still gave
            # bin/against 0.96 for https-1k (2026-11-23): read differences
            # under ~5% between the two as noise.
            if [ -n "$AGAINST" ] && [ $((i % 2)) = 0 ]; then
                a+=("$(scenario "$s" $AGAINST_PORT)"); p+=("$(scenario "$s" $PROXY_PORT)")
            else
                p+=("$(scenario "$s" $PROXY_PORT)")
                [ -z "$AGAINST" ] || a+=("$(scenario "$s" $AGAINST_PORT)")
            fi
        done
        dm=$(printf '%s\n' "${d[@]}" | median); pm=$(printf '%s\n' "${p[@]}" | median)
        if [ -z "$AGAINST" ]; then
            printf '%-9s %10s %10s %6s\n' "$s" "$dm" "$pm" "$(ratio "$pm" "$dm")"
        else
            am=$(printf '%s\n' "${a[@]}" | median)
            printf '%-9s %10s %10s %10s %6s %6s %8s\n' "$s" "$dm" "$pm" "$am" "$(ratio "$pm" "$dm")" "$(ratio "$am" "$dm")" "$(ratio "$pm" "$am")"
        fi
        pc=$(printf '%s\n' "${p[@]}" | field 2 | median_f)
        if [ "$pc" != - ]; then
            if [ -z "$AGAINST" ]; then
                printf '%-9s worker CPU per request: %s us\n' "" "$pc"
            else
                ac=$(printf '%s\n' "${a[@]}" | field 2 | median_f)
                printf '%-9s worker CPU per request: %s us, against %s us, bin/against %s\n' "" "$pc" "$ac" "$(ratio "$pc" "$ac")"
            fi
        fi
    done
    exit 0
fi

# --- callgrind: instructions per request in the worker (all its threads).
# valgrind cannot follow the exec of /proc/self/exe that starts the worker, so the
# worker alone runs under callgrind, with its sockets and audit log placed
# at the descriptors the supervisor would pass (3 proxy, 4 DNS UDP, 5 DNS
# TCP, 6 audit). The worker drops to uid 65534 and makes itself
# non-dumpable, so callgrind_control cannot reach it: each scenario starts a
# fresh worker, sends N requests on a few keep-alive connections and stops
# it (SIGTERM); an idle run (start, one request, stop) is subtracted:
# (Ir(N + 1 requests) - Ir(1 request)) / N.
command -v valgrind >/dev/null || { echo "missing valgrind" >&2; exit 1; }
mkdir -p "$DIR/cg"; chown 65534:65534 "$DIR/cg"
cg_requests() {   # all N must succeed
    local out
    case $1 in
        http-1k) out=$(h2load --h1 -n"$REQUESTS" -c4 -H ":authority: localhost:$PLAIN" "http://127.0.0.1:$PROXY_PORT/1k" 2>&1) ;;
        https-1k) out=$(h2load --h1 -n"$REQUESTS" -c4 -H ":authority: localhost:$TLSP" "https://localhost:$PROXY_PORT/1k" 2>&1) ;;
        h2-1k) out=$(h2load -n"$REQUESTS" -c1 -m50 -H ":authority: localhost:$TLSP" "https://localhost:$PROXY_PORT/1k" 2>&1) ;;
        *) return 0 ;;
    esac
    echo "$out" | grep -q "^status codes: $REQUESTS 2xx" || { echo "$1: not all $REQUESTS requests got 2xx:" >&2; echo "$out" | grep -E "requests:|status" >&2; exit 1; }
}
cg_run() {   # name: total Ir of one worker life
    worker_start "$1" valgrind; cg_requests "$1"; stop_sidecar
    awk '/^totals:/ {t += $2} END {print t}' "$DIR/cg/$1"
}
printf '%-9s %14s   (%s requests, callgrind, worker process)\n' scenario instr/request "$REQUESTS"
worker_start check
check_ok "http://127.0.0.1:$PROXY_PORT/1k" $PLAIN; check_ok "https://localhost:$PROXY_PORT/1k" $TLSP
stop_sidecar
idle=$(cg_run idle)
for s in $SCENARIOS; do
    [ "$s" = big ] && continue
    ir=$(cg_run "$s")
    printf '%-9s %14s\n' "$s" "$(awk -v a="$ir" -v b="$idle" -v n="$REQUESTS" 'BEGIN {printf "%d", (a - b) / n}')"
done
