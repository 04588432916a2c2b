#!/usr/bin/python3
"""A tiny Server-Sent Events origin for bench/compare.sh.

Listens on HOST:PORT (plain HTTP/1.1; nginx in the origin namespace puts
TLS in front of it at /sse). `GET /sse?n=N&ms=M` answers with N events, one
every M milliseconds, each `data: <CLOCK_REALTIME in ns at the write>`, then
closes. The client (sse_client.py) runs on the same machine, so it reads the
same clock and can tell how long each event took to reach it.
"""

import asyncio
import socket
import sys
import time
from urllib.parse import parse_qs, urlsplit


async def handle(reader, writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        writer.close()
        return
    target = head.split(b" ", 2)[1].decode("latin-1") if head.count(b" ") >= 2 else "/"
    query = parse_qs(urlsplit(target).query)
    n = int(query.get("n", ["50"])[0])
    interval = int(query.get("ms", ["20"])[0]) / 1000.0
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    try:
        for _ in range(n):
            await asyncio.sleep(interval)
            writer.write(b"data: %d\n\n" % time.time_ns())
            await writer.drain()
    except ConnectionError:
        pass
    writer.close()


async def main(host, port):
    server = await asyncio.start_server(handle, host, port, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
