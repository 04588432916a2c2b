# Scenarios of bench/compare.sh. Sourced after world.sh and jail.sh.
# Each run_sN PEER ROUND runs one measurement and records its figures as
# lines `scenario<TAB>peer<TAB>round<TAB>metric<TAB>value` in $RESULTS.
# A run whose responses were not all 2xx, or that failed, records `nan`
# (and says why on stderr): a proxy that refuses is not a fast proxy.

URL_HTTPS=https://$ORIGIN_NAME
URL_HTTP=http://$ORIGIN_NAME

record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$RESULTS"; }

# Keeps a client's output for the logs; echoes the file name.
log_file() { echo "$W/logs/$1-$2-r$3.txt"; }

# wrk_fields FILE -> "req_per_s p50_ms p99_ms requests bad" (bad: non-2xx
# responses + socket errors, timeouts included)
wrk_fields() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
            if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
            if (v ~ /s$/)  return substr(v, 1, length(v) - 1) * 1000
            return "nan"
        }
        /^Requests\/sec:/ { rps = $2 }
        / requests in / { n = $1 }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        /Non-2xx or 3xx responses:/ { bad += $NF }
        /Socket errors:/ { gsub(",", ""); bad += $4 + $6 + $8 + $10 }
        END { if (rps == "") rps = "nan"; if (p50 == "") p50 = "nan"; if (p99 == "") p99 = "nan"
              printf "%s %s %s %d %d\n", rps, p50, p99, n, bad }' "$1"
}

# run_wrk SCEN PEER ROUND URL [wrk args...]: records req/s (and latencies
# when --latency is among the args). A warm-up of $WARM s with the same
# arguments goes first (proxies fill their certificate caches and
# connection pools). A run with no request done, or with more than 1% of
# them failed (non-2xx, socket errors, timeouts after 10 s), records nan.
run_wrk() {
    local scen=$1 peer=$2 round=$3 url=$4; shift 4
    local out rps p50 p99 n bad
    out=$(log_file "$scen" "$peer" "$round")
    on_peer "$peer" wrk -t2 -d"${WARM}s" --timeout 10s "$@" "$url" > "$out.warm" 2>&1 || true
    on_peer "$peer" wrk -t2 -d"${DUR}s" --timeout 10s "$@" "$url" > "$out" 2>&1 || true
    read -r rps p50 p99 n bad < <(wrk_fields "$out")
    if [ "$n" = 0 ] || [ "$rps" = nan ] || [ $((bad * 100)) -gt "$n" ]; then
        echo "  ! s$scen $peer round $round: $n requests, $bad failed (see $out); recorded as nan" >&2
        rps=nan p50=nan p99=nan
    elif [ "$bad" -gt 0 ]; then
        echo "  ! s$scen $peer round $round: $bad of $n requests failed (under 1%: kept)" >&2
    fi
    record "$scen" "$peer" "$round" rps "$rps"
    if [[ " $* " == *" --latency "* ]]; then
        record "$scen" "$peer" "$round" p50_ms "$p50"
        record "$scen" "$peer" "$round" p99_ms "$p99"
    fi
    echo "  s$scen $peer r$round: $rps req/s p50 $p50 ms p99 $p99 ms"
}

# 1: HTTPS keep-alive, 1 KiB, 64 connections.
run_s1() { run_wrk 1 "$1" "$2" "$URL_HTTPS/1k" -c64 --latency; }

# 2: HTTPS, a new TLS connection for every request (the origin closes).
run_s2() { run_wrk 2 "$1" "$2" "$URL_HTTPS/1k" -c32 -H "Connection: close"; }

# 3: one big HTTPS download with curl: MiB/s.
run_s3() {
    local peer=$1 round=$2 out size t code mibs
    out=$(log_file 3 "$peer" "$round")
    on_peer "$peer" curl -sS -o /dev/null --max-time "$BIG_TIMEOUT" \
        -w '%{size_download} %{time_total} %{http_code}\n' "$URL_HTTPS/big" > "$out" 2>&1 || true
    read -r size t code < <(tail -1 "$out")
    if [ "${code:-}" = 200 ] && [ "${size:-0}" -gt 0 ]; then
        mibs=$(awk -v s="$size" -v t="$t" 'BEGIN { printf "%.1f", s / t / 1048576 }')
    else
        echo "  ! s3 $peer round $round: $(cat "$out")" >&2
        mibs=nan
    fi
    record 3 "$peer" "$round" mib_per_s "$mibs"
    echo "  s3 $peer r$round: $mibs MiB/s ($size bytes in $t s)"
}

# 4: HTTP/2, h2load, 100 streams on each of 4 connections.
run_s4() {
    local peer=$1 round=$2 out rps ok total
    out=$(log_file 4 "$peer" "$round")
    on_peer "$peer" h2load -t1 -c4 -m100 -D "$DUR" --warm-up-time="$WARM" "$URL_HTTPS/1k" > "$out" 2>&1 || true
    rps=$(awk '/^finished in/ { gsub(",", ""); print $4 }' "$out")
    read -r total ok < <(awk '/^requests:/ { print $2, $8 }' "$out")
    if grep -q "Application protocol: http/1.1" "$out"; then
        echo "  s4 $peer r$round: no HTTP/2 (the peer negotiated http/1.1)"
        record 4 "$peer" "$round" rps unsupported
        return 0
    fi
    if [ -z "$rps" ] || [ "${total:-0}" = 0 ] || [ "$ok" != "$total" ] || ! grep -q "Application protocol: h2" "$out"; then
        echo "  ! s4 $peer round $round: no complete HTTP/2 run ($(grep -E 'requests:|protocol|No protocol' "$out" | tr '\n' ' '))" >&2
        rps=nan
    fi
    record 4 "$peer" "$round" rps "${rps:-nan}"
    echo "  s4 $peer r$round: ${rps:-nan} req/s"
}

# 5: plain HTTP keep-alive, 1 KiB, 64 connections.
run_s5() { run_wrk 5 "$1" "$2" "$URL_HTTP/1k" -c64 --latency; }

# 6: SSE, delay from the origin's write to the client's read (median).
run_s6() {
    local peer=$1 round=$2 out med dir=$REPO/bench/compare
    case $peer in boundary-runc*) dir=/bench ;; esac  # the jail mounts it there
    out=$(log_file 6 "$peer" "$round")
    on_peer "$peer" /usr/bin/python3 "$dir/sse_client.py" "$URL_HTTPS/sse?n=$SSE_EVENTS&ms=50" > "$out" 2>&1 || true
    med=$(jq -r '.median_us / 1000' "$out" 2>/dev/null | tail -1)
    if [ -z "$med" ]; then echo "  ! s6 $peer round $round: $(tail -2 "$out")" >&2; med=nan; fi
    record 6 "$peer" "$round" median_ms "$med"
    echo "  s6 $peer r$round: median $med ms"
}

# 7: policy cost: scenario 1 against a jail with 1 rule and one with 10,000.
# The two go in turn first (odd rounds: 1 rule first).
run_s7() {
    local round=$2 peers=(boundary-runc boundary-runc-10k)
    [ $((round % 2)) = 0 ] && peers=(boundary-runc-10k boundary-runc)
    # A B B A: a drift of the machine's load within the round hits both
    # alike (consecutive runs of one jail differ by ±5-10 % here).
    run_wrk 7 "${peers[0]}" "${round}a" "$URL_HTTPS/1k" -c64
    run_wrk 7 "${peers[1]}" "${round}a" "$URL_HTTPS/1k" -c64
    run_wrk 7 "${peers[1]}" "${round}b" "$URL_HTTPS/1k" -c64
    run_wrk 7 "${peers[0]}" "${round}b" "$URL_HTTPS/1k" -c64
}

# 8 (under load): scenario 1 in the jail while sampling its sidecar's RSS.
run_s1_sampled() {
    local round=$1 peak=0 rss pss sampler
    ( while :; do sidecar_mem b1; sleep 0.5; done ) > "$W/logs/mem-load-r$round.txt" 2>/dev/null &
    sampler=$!
    run_s1 boundary-runc "$round"
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
    while read -r rss pss; do [ "$rss" -gt "$peak" ] && peak=$rss; done < "$W/logs/mem-load-r$round.txt"
    record 8 boundary-runc "$round" load_rss_mib "$(awk -v k="$peak" 'BEGIN { printf "%.1f", k / 1024 }')"
}

# 8 (idle): one jail before any traffic, settled (each sidecar process
# gives back its start-up pages 2 s after it starts).
run_s8_idle() {
    local rss pss
    sleep 3
    read -r rss pss < <(sidecar_mem b1)
    record 8 boundary-runc 1 idle_rss_mib "$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')"
    record 8 boundary-runc 1 idle_pss_mib "$(awk -v k="$pss" 'BEGIN { printf "%.1f", k / 1024 }')"
    echo "  s8 idle sidecar: RSS $rss KiB, PSS $pss KiB"
}

# 8 (idle, many): $MEM_CONTAINERS idle jails together.
run_s8_many() {
    local rss pss total_rss=0 total_pss=0 i n=$MEM_CONTAINERS
    for i in $(seq -w 1 "$n"); do brc_start "m$i" "$W/brc/spec-1.json" || return 1; done
    sleep 3
    for i in $(seq -w 1 "$n"); do
        read -r rss pss < <(sidecar_mem "m$i")
        total_rss=$((total_rss + rss)) total_pss=$((total_pss + pss))
    done
    record 8 boundary-runc 1 idle_n_rss_mib "$(awk -v k="$total_rss" 'BEGIN { printf "%.1f", k / 1024 }')"
    record 8 boundary-runc 1 idle_n_pss_mib "$(awk -v k="$total_pss" 'BEGIN { printf "%.1f", k / 1024 }')"
    echo "  s8 $n idle sidecars: RSS $total_rss KiB, PSS $total_pss KiB"
    for i in $(seq -w 1 "$n"); do brc delete --force "m$i" > /dev/null; done
}
