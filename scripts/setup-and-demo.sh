#!/usr/bin/env bash
# Sets up boundary-runc on a fresh Debian machine and runs the main job: a
# container under a policy, showing an allowed and a denied request.
#
# Installs runc, nftables, iproute2, busybox-static, curl, ca-certificates,
# openssl, binutils and musl-tools (apt-get) and, with rustup, the
# x86_64-unknown-linux-musl target (for the hook), builds the three
# binaries in release mode (scripts/build-release.sh), installs
# boundary-runc, boundary-hook and boundary-sidecar to /usr/local/bin, then:
#   - starts a test origin (busybox httpd, HTTP and HTTPS) in its own
#     network namespace, named demo.internal through a pinned name in a
#     demo config;
#   - runs a busybox+curl container through `boundary-runc run` with
#     BOUNDARY_ALLOW="method=GET domain=demo.internal path=/public/*";
#   - inside, requests an allowed URL over HTTP and over HTTPS (intercepted),
#     a denied path and a denied host, a ping (dropped) and the origin's
#     bare IP (still judged);
#   - prints the audit log; removes the origin again.
# No traffic leaves the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
need_root
need_cargo
install_packages runc nftables iproute2 busybox-static curl ca-certificates openssl binutils
# The hook is linked against musl when the toolchain can (musl-gcc and the
# Rust target; see scripts/build-release.sh); without them it is static
# glibc, so both are best effort.
install_packages musl-tools || echo "note: musl-tools not installed; boundary-hook will be static glibc"
if command -v rustup >/dev/null && ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    timeout 120 rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 || echo "note: rustup target add x86_64-unknown-linux-musl failed; boundary-hook will be static glibc"
fi

echo "==> scripts/build-release.sh (cargo build --release, statically linked)"
scripts/build-release.sh
install -m 0755 target/release/boundary-runc target/release/boundary-hook target/release/boundary-sidecar /usr/local/bin/

demo=/tmp/boundary-demo
origin_ns=boundary-demo-origin
cleanup() {
    for p in "$demo/httpd.pid" "$demo/https.pid"; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true; done
    pkill -f "openssl s_server -quiet -WWW -accept 443" 2>/dev/null || true
    ip netns del "$origin_ns" 2>/dev/null || true
    ip link del bnddemo0 2>/dev/null || true
}
trap cleanup EXIT
cleanup
rm -rf "$demo" && mkdir -p "$demo/www/public" "$demo/www/private" "$demo/bundle"
echo "hello from demo.internal (an allowed request)" > "$demo/www/public/hello.txt"
echo "a secret" > "$demo/www/private/secret.txt"

echo "==> test origin demo.internal = 10.250.0.2 in namespace $origin_ns"
ip netns add "$origin_ns"
ip link add bnddemo0 type veth peer name eth0 netns "$origin_ns"
ip addr add 10.250.0.1/30 dev bnddemo0 && ip link set bnddemo0 up
ip -n "$origin_ns" addr add 10.250.0.2/30 dev eth0
ip -n "$origin_ns" link set eth0 up && ip -n "$origin_ns" link set lo up
ip netns exec "$origin_ns" busybox httpd -f -p 10.250.0.2:80 -h "$demo/www" &
echo $! > "$demo/httpd.pid"
# HTTPS on the origin, with a CA of its own that only the sidecar trusts.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=demo origin CA" \
    -keyout "$demo/origin-ca.key" -out "$demo/origin-ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=demo.internal" -keyout "$demo/origin.key" -out "$demo/origin.csr" 2>/dev/null
printf 'subjectAltName=DNS:demo.internal\n' > "$demo/san.ext"
openssl x509 -req -in "$demo/origin.csr" -CA "$demo/origin-ca.pem" -CAkey "$demo/origin-ca.key" -CAcreateserial \
    -days 2 -extfile "$demo/san.ext" -out "$demo/origin.pem" 2>/dev/null
(cd "$demo/www" && exec ip netns exec "$origin_ns" openssl s_server -quiet -WWW -accept 443 \
    -cert "$demo/origin.pem" -key "$demo/origin.key") >/dev/null 2>&1 &
echo $! > "$demo/https.pid"

cat > "$demo/config.toml" <<CONF
state_root = "/run/boundary-runc-demo"
[tls]
upstream_ca_files = ["$demo/origin-ca.pem"]
[dns]
pinned = { "demo.internal" = "10.250.0.2", "evil.example" = "10.250.0.2" }
[audit]
dir = "$demo/audit"
CONF

echo "==> container rootfs (busybox + curl)"
build_rootfs "$demo/bundle/rootfs"
script='
echo "--- allowed: GET http://demo.internal/public/hello.txt"
curl -sS http://demo.internal/public/hello.txt
echo "--- allowed over TLS (intercepted; curl verifies with the mounted boundary CA): GET https://demo.internal/public/hello.txt"
curl -sS https://demo.internal/public/hello.txt
echo "--- denied path: GET http://demo.internal/private/secret.txt"
curl -sS -i http://demo.internal/private/secret.txt
echo "--- denied host: GET http://evil.example/"
curl -sS -i http://evil.example/
echo "--- ICMP and UDP do not leave (the host side drops them):"
ping -c1 -W1 10.250.0.2 >/dev/null 2>&1 && echo "ping 10.250.0.2: answered (BAD)" || echo "ping 10.250.0.2: no answer"
echo "--- straight to the origin IP, skipping DNS: still judged by the sidecar"
curl -sS -o /dev/null -w "GET http://10.250.0.2/public/hello.txt -> %{http_code}\\n" http://10.250.0.2/public/hello.txt
'
write_demo_spec "$demo/bundle/config.json" "$script"

echo "==> boundary-runc run demo   (BOUNDARY_ALLOW=\"method=GET domain=demo.internal path=/public/*\")"
cd "$demo/bundle"
BOUNDARY_RUNC_CONFIG="$demo/config.toml" boundary-runc run demo-$$
echo "==> audit log: boundary-runc audit demo-$$"
BOUNDARY_RUNC_CONFIG="$demo/config.toml" boundary-runc audit "demo-$$"
