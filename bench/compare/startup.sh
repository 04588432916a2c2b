# Scenario 9 of bench/compare.sh: container start-up cost.
#  - `boundary-runc run` vs `runc run` of /bin/true, same bundle (a
#    busybox rootfs, `runc spec`'s fresh network namespace: host side in the
#    host's namespace);
#  - `docker run --rm` with dockerd's default runtime vs
#    `--runtime=boundary-bench` (this run's boundary-runc binary itself,
#    registered in /etc/docker/daemon.json for the run only, as `install
#    docker` registers it: no wrapper script, so it runs with the host's
#    settings, /etc/boundary-runc/config.toml or the defaults; its audit
#    records go to the host's audit directory), image from scratch with
#    busybox-static.
# Both are timed by compare/interleave.py: one run of each per round, in
# turn, so a load that drifts during the run moves both rows alike. `run`
# is timed twice: back to back (the target's row: on two cores each start
# also meets the last one's background work) and spaced LIFE_GAP_MS apart.
#
# Where `run` keeps its files: on a standard host runc's root (/run/runc),
# boundary-runc's state root (/run/boundary-runc) and an engine's bundles
# (/run/containerd) are on /run, a tmpfs. So the bundle, runc's --root and
# the state root of the target's rows are on a tmpfs mounted here for
# scenario 9 alone, for both runtimes. The back-to-back pair is also run
# with them on the machine's disk (the work directory): a disk where
# creating files is slow (ext4 without a journal scans past recently freed
# inodes) costs boundary-runc, which writes more small files per start
# than runc (state, lease, resolv.conf, the sidecar's config), more.
# Sourced after jail.sh.

DOCKER_RUNTIME=boundary-bench
LIFE_GAP_MS=150
DOCKER_IMAGE=boundary-bench-busybox:latest
DOCKER_REGISTERED=0
DOCKER_IMAGE_BUILT=0

run_s9_run() {
    local d=$W/life
    mkdir -p "$d"
    mount -t tmpfs -o size=512m,mode=0755 boundary-bench-life "$d"
    s9_run_in "$d" run_ms run_cpu_ms run_spaced_ms || { umount -l "$d"; return 1; }
    umount "$d" || umount -l "$d"
    s9_run_in "$W/life-disk" run_disk_ms "" "" || return 1
}

# s9_run_in DIR RUN_METRIC CPU_METRIC SPACED_METRIC: the interleaved `run`
# pair with everything in DIR (the spaced one only with SPACED_METRIC).
s9_run_in() {
    local d=$1 run_metric=$2 cpu_metric=$3 spaced_metric=$4
    mkdir -p "$d/bundle"
    build_rootfs "$d/bundle/rootfs"
    write_demo_spec "$d/bundle/config.json" "true"
    cp "$d/bundle/config.json" "$d/pristine.json"
    brc_config "$d/config.toml" "$d/state" "$LIFE_POOL"
    python3 "$REPO/bench/compare/interleave.py" --warmup 2 --runs "$LIFE_RUNS" \
        --prepare-copy "$d/pristine.json" "$d/bundle/config.json" \
        runc "runc --root $d/runc-root run -b $d/bundle r{n}" \
        boundary-runc "BOUNDARY_RUNC_CONFIG=$d/config.toml $BIN/boundary-runc --root $d/runc-root run -b $d/bundle b{n}" \
        > "$d/run.tsv" 2>> "$W/logs/9-run.txt" || { cat "$W/logs/9-run.txt" >&2; umount "$d/state/netns" "$d/state/userns" 2> /dev/null; return 1; }
    # The same, spaced: each start on a machine that has finished the last
    # one's background work (for the latency of one start, not a burst).
    if [ -n "$spaced_metric" ]; then
        python3 "$REPO/bench/compare/interleave.py" --warmup 2 --runs "$LIFE_RUNS" --gap "$LIFE_GAP_MS" \
            --prepare-copy "$d/pristine.json" "$d/bundle/config.json" \
            runc "runc --root $d/runc-root run -b $d/bundle rs{n}" \
            boundary-runc "BOUNDARY_RUNC_CONFIG=$d/config.toml $BIN/boundary-runc --root $d/runc-root run -b $d/bundle bs{n}" \
            > "$d/spaced.tsv" 2>> "$W/logs/9-run.txt" || { cat "$W/logs/9-run.txt" >&2; umount "$d/state/netns" "$d/state/userns" 2> /dev/null; return 1; }
    fi
    umount "$d/state/netns" "$d/state/userns" 2> /dev/null || true
    while IFS=$'\t' read -r who ms cpu; do
        record 9 "$who" 1 "$run_metric" "$ms"
        [ -z "$cpu_metric" ] || record 9 "$who" 1 "$cpu_metric" "$cpu"
        echo "  s9 run /bin/true ($run_metric) $who: $ms ms"
    done < "$d/run.tsv"
    [ -n "$spaced_metric" ] || return 0
    while IFS=$'\t' read -r who ms cpu; do
        record 9 "$who" 1 "$spaced_metric" "$ms"
        echo "  s9 run /bin/true, spaced $LIFE_GAP_MS ms, $who: $ms ms"
    done < "$d/spaced.tsv"
}

run_s9_docker() {
    local d=$W/docker
    if ! docker info > /dev/null 2>&1; then
        echo "  ! s9 docker: dockerd does not answer; docker rows left out" >&2
        return 0
    fi
    true_image "$d" "$DOCKER_IMAGE"
    DOCKER_IMAGE_BUILT=1
    DOCKER_REGISTERED=1
    docker_runtime add "$DOCKER_RUNTIME" "$BIN/boundary-runc"
    docker run --rm --runtime="$DOCKER_RUNTIME" "$DOCKER_IMAGE" /bin/true || {
        echo "  ! s9 docker run --runtime=$DOCKER_RUNTIME fails; docker rows left out" >&2; return 0; }
    python3 "$REPO/bench/compare/interleave.py" --warmup 2 --runs "$LIFE_RUNS" \
        runc "docker run --rm $DOCKER_IMAGE /bin/true" \
        boundary-runc "docker run --rm --runtime=$DOCKER_RUNTIME $DOCKER_IMAGE /bin/true" \
        > "$d/run.tsv" 2> "$W/logs/9-docker.txt" || { cat "$W/logs/9-docker.txt" >&2; return 1; }
    while IFS=$'\t' read -r who ms _; do
        record 9 "$who" 1 docker_ms "$ms"
        echo "  s9 docker run --rm $who: $ms ms"
    done < "$d/run.tsv"
}

teardown_startup() {
    if [ "$DOCKER_REGISTERED" = 1 ]; then docker_runtime remove "$DOCKER_RUNTIME" || true; fi
    if [ "$DOCKER_IMAGE_BUILT" = 1 ]; then docker rmi -f "$DOCKER_IMAGE" > /dev/null 2>&1 || true; fi
    for d in "$W/life" "$W/life-disk"; do
        umount "$d/state/netns" "$d/state/userns" 2> /dev/null || true
    done
    umount -l "$W/life" 2> /dev/null || true
}
