# boundary-runc as a peer: jailed clients for bench/compare.sh.
# Sourced after world.sh. The bundles run `sleep infinity` in a rootfs that
# binds the host's /usr read-only (wrk, h2load, curl, python3 and their
# libraries) and bench/compare at /bench; their network entry is brb-hop's
# path, so the jails' host side (veth, nft table, sidecar) lives in the hop.
# Benchmark clients run in them with `boundary-runc exec`.

BRC_POOL=10.213.240.0/22   # slots 240..243
LIFE_POOL=10.213.244.0/24  # slot 244: scenario 9, host-namespace bundles

BRC_CONTAINERS=()

# brc_config FILE STATE_ROOT POOL
brc_config() {
    cat > "$1" <<CONF
state_root = "$2"
[network]
pool = "$3"
[policy]
allow_container_rules = true
[tls]
ca_dir = "$W/brc/ca"
upstream_system_roots = false
upstream_ca_files = ["$W/pki/origin-ca.pem"]
[dns.pinned]
"$ORIGIN_NAME" = "$ORIGIN_ADDR"
[audit]
dir = "$W/brc/audit"
CONF
}

brc() {
    BOUNDARY_RUNC_CONFIG=$W/brc/config.toml "$BIN/boundary-runc" --root "$W/brc/runc-root" "$@"
}

brc_rootfs() {
    local r=$W/brc/rootfs
    mkdir -p "$r"/{usr,etc,proc,sys,dev,tmp,bench}
    for l in bin lib lib64 sbin; do ln -s "usr/$l" "$r/$l"; done
    echo "root:x:0:0:root:/root:/bin/sh" > "$r/etc/passwd"
    echo "root:x:0:" > "$r/etc/group"
    echo "hosts: files dns" > "$r/etc/nsswitch.conf"
    echo "127.0.0.1 localhost" > "$r/etc/hosts"
    cp /etc/services /etc/protocols "$r/etc/"   # wrk resolves "https" as a service
}

# The pristine bundle spec (before any rewrite) with allow rules from file $1.
brc_spec() {
    runc spec --bundle "$W/brc" 2>/dev/null || true
    jq --arg rootfs "$W/brc/rootfs" --arg ns "/run/netns/$NS_HOP" --arg bench "$REPO/bench/compare" \
       --argjson nofile "$(ulimit -Hn)" --rawfile rules "$1" '
        .root = {path: $rootfs, readonly: true}
        | .process.terminal = false
        | .process.args = ["/usr/bin/sleep", "infinity"]
        | .process.rlimits = [{type: "RLIMIT_NOFILE", hard: $nofile, soft: $nofile}]
        | .linux.namespaces |= map(if .type == "network" then .path = $ns else . end)
        | .mounts += [{destination: "/usr", type: "bind", source: "/usr", options: ["rbind", "ro"]},
                      {destination: "/bench", type: "bind", source: $bench, options: ["rbind", "ro"]}]
        | .annotations["io.boundary.allow"] = $rules' "$W/brc/config.json"
}

# brc_start ID SPEC: a detached jailed container from a copy of SPEC.
brc_start() {
    local id=$1 spec=$2 b=$W/brc/bundles/$1
    mkdir -p "$b"
    cp "$spec" "$b/config.json"
    BRC_CONTAINERS+=("$id")
    brc create --bundle "$b" "$id" < /dev/null > "$b/out" 2> "$b/err" || {
        echo "error: boundary-runc create $id failed:" >&2; cat "$b/err" >&2; return 1; }
    brc start "$id"
}

setup_brc() {
    mkdir -p "$W/brc/bundles"
    brc_config "$W/brc/config.toml" "$W/brc/state" "$BRC_POOL"
    brc_rootfs
    echo "domain=$ORIGIN_NAME" > "$W/brc/rules-1"
    # 10,000 rules that do not match (exact, wildcard, path, port in turn),
    # plus the origin's, last.
    awk 'BEGIN { for (i = 0; i < 9999; i++) {
        m = i % 4
        if (m == 0) printf "domain=host%d.example.com\n", i
        else if (m == 1) printf "domain=*.w%d.example.org\n", i
        else if (m == 2) printf "method=GET domain=api.*.s%d.test path=/v%d/*\n", i, i
        else printf "domain=h%d.example.net port=8443\n", i } }' > "$W/brc/rules-10k"
    echo "domain=$ORIGIN_NAME" >> "$W/brc/rules-10k"
    brc_spec "$W/brc/rules-1" > "$W/brc/spec-1.json"
    brc_spec "$W/brc/rules-10k" > "$W/brc/spec-10k.json"
    brc_start b1 "$W/brc/spec-1.json"
    brc_start b10k "$W/brc/spec-10k.json"
}

# "RSS_KiB PSS_KiB" of container $1's sidecar: all its processes (keeper,
# supervisor, worker).
sidecar_mem() {
    local pids rss=0 pss=0 p
    pids=$(jq -r '[.keeper, .supervisor, .worker] | map(select(. != null)) | .[]' "$W/brc/state/$1/sidecar.pids")
    for p in $pids; do
        rss=$((rss + $(awk '/^VmRSS:/ {print $2}' "/proc/$p/status")))
        pss=$((pss + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup")))
    done
    echo "$rss $pss"
}

teardown_brc() {
    local id
    for id in "${BRC_CONTAINERS[@]}"; do brc delete --force "$id" > /dev/null 2>&1 || true; done
    umount "$W/brc/state/netns" "$W/brc/state/userns" 2> /dev/null || true
}
