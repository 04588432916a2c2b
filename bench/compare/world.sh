# The world of bench/compare.sh: namespaces, the origin, the proxies.
# Sourced by compare.sh after it set W (work dir, mode 755), REPO and BIN.
#
#   brb-client (10.231.241.2) ──veth── brb-hop ──veth── brb-origin (10.231.240.2)
#   clients: wrk, h2load,            10.231.241.1 / 10.231.240.1      nginx :80 :443 (h1, h2)
#   curl, sse_client.py              squid :3129/:3130 (intercept)    sse_origin.py :8081 (via
#                                    mitmdump :8080 (transparent)     nginx at /sse)
#                                    nft table ip brb_peer picks the
#                                    proxy (or none: routed, direct)
#   boundary-runc jails: bundles whose network entry is brb-hop's path,
#   so each jail's host side (veth, nft table, sidecar) is in brb-hop.
#
# Addresses come from the bench's test slots 240..=249 (tests/src/lib.rs).

NS_ORIGIN=brb-origin
NS_HOP=brb-hop
NS_CLIENT=brb-client
ORIGIN_ADDR=10.231.240.2
ORIGIN_NAME=origin.bench
SQUID_HTTP=3129
SQUID_HTTPS=3130
MITM_PORT=8080
SSE_PORT=8081

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# Waits until something listens on TCP port $2 in namespace $1.
wait_listen() {
    local ns=$1 port=$2 i
    for i in $(seq 300); do
        in_ns "$ns" ss -Hltn "sport = :$port" | grep -q . && return 0
        sleep 0.1
    done
    echo "error: nothing listens on port $port in $ns after 30 s" >&2
    return 1
}

# veth $1 (in $3) <-> $2 (in $4), addresses $5 and $6 (/30).
veth_pair() {
    ip link add "$1" netns "$3" type veth peer name "$2" netns "$4"
    in_ns "$3" ip addr add "$5/30" dev "$1"
    in_ns "$4" ip addr add "$6/30" dev "$2"
    in_ns "$3" ip link set "$1" up
    in_ns "$4" ip link set "$2" up
}

build_namespaces() {
    local ns
    for ns in $NS_ORIGIN $NS_HOP $NS_CLIENT; do
        ip netns add "$ns"
        in_ns "$ns" ip link set lo up
        mkdir -p "/etc/netns/$ns"
        printf '127.0.0.1 localhost\n%s %s\n' "$ORIGIN_ADDR" "$ORIGIN_NAME" > "/etc/netns/$ns/hosts"
    done
    veth_pair brb-oh brb-oo $NS_HOP $NS_ORIGIN 10.231.240.1 $ORIGIN_ADDR
    veth_pair brb-ch brb-cc $NS_HOP $NS_CLIENT 10.231.241.1 10.231.241.2
    in_ns $NS_ORIGIN ip route add default via 10.231.240.1
    in_ns $NS_CLIENT ip route add default via 10.231.241.1
    in_ns $NS_HOP sysctl -qw net.ipv4.ip_forward=1
    for ns in $NS_ORIGIN $NS_HOP $NS_CLIENT; do
        # Many short connections (scenario 2) must not run out of ports.
        in_ns "$ns" sysctl -qw net.ipv4.ip_local_port_range="1024 65000" net.ipv4.tcp_tw_reuse=1 net.core.somaxconn=4096
    done
    in_ns $NS_HOP nft -f - <<'NFT'
table ip brb_peer {
    chain pre {
        type nat hook prerouting priority dstnat; policy accept;
    }
}
NFT
}

# An ECDSA P-256 CA ($1: name) and, with $2, a leaf for $2 signed by it.
make_ca() {
    local name=$1 d=$W/pki
    mkdir -p "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -keyout "$d/$name-ca.key" -out "$d/$name-ca.pem" -subj "/CN=boundary-runc bench $name CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

make_leaf() {
    local ca=$1 host=$2 d=$W/pki
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/$host.key" \
        -out "$d/$host.csr" -subj "/CN=$host" 2>/dev/null
    printf 'subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' "$host" > "$d/$host.ext"
    openssl x509 -req -in "$d/$host.csr" -CA "$d/$ca-ca.pem" -CAkey "$d/$ca-ca.key" -CAcreateserial \
        -days 2 -out "$d/$host.pem" -extfile "$d/$host.ext" 2>/dev/null
}

# nginx (HTTP :80, HTTPS + h2 :443) and the SSE origin, in brb-origin.
start_origin() {
    local o=$W/origin
    mkdir -p "$o/www" "$o/tmp"
    head -c 1024 /dev/urandom > "$o/www/1k"
    truncate -s "$BIG_SIZE" "$o/www/big"   # sparse: reads as zeros, costs no disk
    # Read once now, so no peer's first download pays for filling the page
    # cache (276 against ~800 MiB/s for the first direct download, 6b2f0c1).
    cat "$o/www/big" > /dev/null
    make_ca origin
    make_leaf origin $ORIGIN_NAME
    cat > "$o/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $o/nginx.pid;
error_log $o/nginx-error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    default_type application/octet-stream;
    sendfile on; tcp_nopush on; tcp_nodelay on;
    keepalive_timeout 300s; keepalive_requests 100000000;
    client_body_temp_path $o/tmp/body; proxy_temp_path $o/tmp/proxy;
    fastcgi_temp_path $o/tmp/fcgi; uwsgi_temp_path $o/tmp/uwsgi; scgi_temp_path $o/tmp/scgi;
    server {
        listen 80 backlog=4096;
        listen 443 ssl http2 backlog=4096;
        server_name $ORIGIN_NAME;
        ssl_certificate $W/pki/$ORIGIN_NAME.pem;
        ssl_certificate_key $W/pki/$ORIGIN_NAME.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        root $o/www;
        location = /sse {
            proxy_pass http://127.0.0.1:$SSE_PORT;
            proxy_http_version 1.1;
            proxy_buffering off;
            proxy_read_timeout 3600s;
        }
    }
}
CONF
    ip netns exec $NS_ORIGIN nginx -c "$o/nginx.conf" > "$o/nginx.out" 2>&1 &
    PIDS+=($!)
    ip netns exec $NS_ORIGIN /usr/bin/python3 "$REPO/bench/compare/sse_origin.py" 127.0.0.1 $SSE_PORT > "$o/sse.out" 2>&1 &
    PIDS+=($!)
    wait_listen $NS_ORIGIN 443
    wait_listen $NS_ORIGIN $SSE_PORT
}

# squid-openssl in brb-hop: intercepts :80 and bumps :443 (peek at the SNI,
# then bump), minting leaves with its own CA; trusts the origin CA upstream.
start_squid() {
    local s=$W/squid
    mkdir -p "$s"
    make_ca squid
    cp "$W/pki/squid-ca.pem" "$W/pki/squid-ca.key" "$s/"
    /usr/lib/squid/security_file_certgen -c -s "$s/ssl_db" -M 16MB > /dev/null
    cat > "$s/squid.conf" <<CONF
http_port 127.0.0.1:3128
http_port $SQUID_HTTP intercept
https_port $SQUID_HTTPS intercept ssl-bump tls-cert=$s/squid-ca.pem tls-key=$s/squid-ca.key generate-host-certificates=on dynamic_cert_mem_cache_size=16MB
sslcrtd_program /usr/lib/squid/security_file_certgen -s $s/ssl_db -M 16MB
sslcrtd_children 5 startup=1 idle=1
acl step1 at_step SslBump1
ssl_bump peek step1
ssl_bump bump all
tls_outgoing_options cafile=$W/pki/origin-ca.pem
http_access allow all
cache deny all
access_log none
cache_store_log none
cache_log $s/cache.log
pid_filename $s/squid.pid
coredump_dir $s
hosts_file /etc/hosts
dns_nameservers 127.0.0.1
via off
forwarded_for delete
shutdown_lifetime 1 seconds
max_filedescriptors 65536
cache_effective_user proxy
CONF
    chown -R proxy:proxy "$s"
    ip netns exec $NS_HOP squid -N -f "$s/squid.conf" > "$s/squid.out" 2>&1 &
    PIDS+=($!)
    wait_listen $NS_HOP $SQUID_HTTPS
}

# mitmproxy (mitmdump) in transparent mode in brb-hop; it makes its own CA
# (RSA 2048, its default) in its confdir on first start.
start_mitm() {
    local m=$W/mitm
    mkdir -p "$m"
    ip netns exec $NS_HOP mitmdump -q --mode transparent --listen-port $MITM_PORT \
        --set confdir="$m" --set ssl_verify_upstream_trusted_ca="$W/pki/origin-ca.pem" \
        --set stream_large_bodies=1 > "$m/mitm.out" 2>&1 &
    PIDS+=($!)
    wait_listen $NS_HOP $MITM_PORT
    cp "$m/mitmproxy-ca-cert.pem" "$W/pki/mitm-ca.pem"
}

# Points brb-client's traffic at one proxy (or at none).
select_peer() {
    local rules=""
    case $1 in
        squid) rules="iifname \"brb-ch\" tcp dport 80 redirect to :$SQUID_HTTP
            iifname \"brb-ch\" tcp dport 443 redirect to :$SQUID_HTTPS" ;;
        mitmproxy) rules="iifname \"brb-ch\" tcp dport { 80, 443 } redirect to :$MITM_PORT" ;;
    esac
    in_ns $NS_HOP nft -f - <<NFT
flush chain ip brb_peer pre
table ip brb_peer {
    chain pre {
        $rules
    }
}
NFT
}

# The CA a client of peer $1 trusts.
peer_ca() {
    case $1 in
        direct) echo "$W/pki/origin-ca.pem" ;;
        squid) echo "$W/pki/squid-ca.pem" ;;
        mitmproxy) echo "$W/pki/mitm-ca.pem" ;;
    esac
}

# Runs a client command as peer $1 sees it: in brb-client through the
# selected proxy, or inside a boundary-runc jail (peer `boundary-runc`:
# container b1; `boundary-runc-10k`: container b10k).
on_peer() {
    local peer=$1; shift
    case $peer in
        boundary-runc) brc exec b1 "$@" ;;
        boundary-runc-10k) brc exec b10k "$@" ;;
        *)
            select_peer "$peer"
            local ca; ca=$(peer_ca "$peer")
            in_ns $NS_CLIENT env SSL_CERT_FILE="$ca" CURL_CA_BUNDLE="$ca" "$@" ;;
    esac
}

# Removes everything world.sh made; each step tolerates a missing piece.
teardown_world() {
    local ns pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    for ns in $NS_CLIENT $NS_HOP $NS_ORIGIN; do
        # Whatever still runs in a namespace this script made was started
        # by it (squid's helpers, nginx workers, sidecars): end it by pid.
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns" 2>/dev/null || true
        rm -rf "/etc/netns/$ns"
    done
}
