#!/usr/bin/python3
"""Reads an SSE stream and reports how long each event took to arrive.

Usage: sse_client.py URL   (https or http; the CA comes from SSL_CERT_FILE)

Each event's data is the origin's CLOCK_REALTIME at the write, in ns (see
sse_origin.py); the delay of an event is the clock when the recv() that
completed it returned, minus that. Prints one JSON line:
{"events": N, "median_us": ..., "p90_us": ..., "max_us": ...}. The first
two events are left out (connection warm-up).
"""

import json
import re
import socket
import ssl
import statistics
import sys
import time
from urllib.parse import urlsplit

EVENT = re.compile(rb"data: (\d+)\n\n")


def connect(url):
    u = urlsplit(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    sock = socket.create_connection((u.hostname, port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if u.scheme == "https":
        ctx = ssl.create_default_context()
        ctx.set_alpn_protocols(["http/1.1"])
        sock = ctx.wrap_socket(sock, server_hostname=u.hostname)
    target = u.path + ("?" + u.query if u.query else "")
    sock.sendall(
        f"GET {target} HTTP/1.1\r\nHost: {u.hostname}\r\n"
        "Accept: text/event-stream\r\nConnection: close\r\n\r\n".encode()
    )
    return sock


class Dechunker:
    """Incremental HTTP/1.1 chunked-body decoder."""

    def __init__(self):
        self.raw = b""
        self.left = 0  # bytes of the current chunk still to come
        self.done = False

    def feed(self, data):
        self.raw += data
        out = b""
        while self.raw and not self.done:
            if self.left:
                take = self.raw[: self.left]
                out += take
                self.raw = self.raw[len(take):]
                self.left -= len(take)
                continue
            if self.raw.startswith(b"\r\n"):
                self.raw = self.raw[2:]
                continue
            line_end = self.raw.find(b"\r\n")
            if line_end < 0:
                break
            size = int(self.raw[:line_end].split(b";")[0], 16)
            self.raw = self.raw[line_end + 2:]
            if size == 0:
                self.done = True
            self.left = size
        return out


def main(url):
    sock = connect(url)
    buf = b""
    head = None
    body_decoder = None
    delays = []
    text = b""
    while True:
        data = sock.recv(65536)
        now = time.time_ns()
        if not data:
            break
        if head is None:
            buf += data
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                continue
            head, data = buf[:end].lower(), buf[end + 4:]
            if not head.startswith(b"http/1.1 200"):
                sys.exit(f"sse_client: unexpected response: {head[:200]!r}")
            if b"transfer-encoding: chunked" in head:
                body_decoder = Dechunker()
        text += body_decoder.feed(data) if body_decoder else data
        pos = 0
        for m in EVENT.finditer(text):
            delays.append((now - int(m.group(1))) / 1000.0)
            pos = m.end()
        text = text[pos:]
        if body_decoder and body_decoder.done:
            break
    sock.close()
    kept = delays[2:]
    if not kept:
        sys.exit(f"sse_client: no events read from {url}")
    kept.sort()
    print(json.dumps({
        "events": len(delays),
        "median_us": statistics.median(kept),
        "p90_us": kept[int(len(kept) * 0.9) - 1 if len(kept) > 1 else 0],
        "max_us": kept[-1],
    }))


if __name__ == "__main__":
    main(sys.argv[1])
