"""Run inside a network namespace by test_limits.py: what a node on HOST:PORT does with connections
and requests that come from many addresses of one IPv6 /64, and from another /64.

The namespace routes two /64s locally (`ip route add local PREFIX dev lo`), and IP_FREEBIND lets a
socket bind any address of them: a real host given a /64 can do exactly this.

    python ipv6_sources.py HOST PORT SAME_64 OTHER_64 HELD

Prints JSON: how many of HELD + 1 slow connections from distinct addresses of SAME_64 the node kept
open, whether one from OTHER_64 was kept, then the statuses of unsigned requests sent each from a
fresh address of SAME_64, and of one from OTHER_64.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import sys
import time

from tlsprobe import is_open, slow_over, tls_context  # beside this file (run as a script)

IP_FREEBIND = 15  # linux/in.h; applies to IPv6 sockets too (Linux 4.15+)


def _connect(host: str, port: int, source: str) -> socket.socket:
    raw = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
    raw.bind((source, 0))
    raw.settimeout(10)
    raw.connect((host, port))
    return raw


def slow(host: str, port: int, source: str) -> ssl.SSLSocket | None:
    """A TLS connection that sends half a request head and then nothing; None if refused."""
    return slow_over(_connect(host, port, source))


def unsigned_query(host: str, port: int, source: str) -> int:
    """The status of one unsigned query on a fresh connection from `source` (0: no reply)."""
    raw = _connect(host, port, source)
    try:
        tls = tls_context().wrap_socket(raw)
        tls.sendall(b"POST /v1/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 2\r\nConnection: close\r\n\r\n{}")
        head = tls.recv(64)
        return int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else 0
    except (ssl.SSLError, OSError):
        return 0
    finally:
        raw.close()


def main() -> None:
    host, port, same, other, held = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
    same_net, other_net = ipaddress.IPv6Network(same), ipaddress.IPv6Network(other)
    queries = 30
    # Every connection and request from an address of its own, spread over the whole /64.
    step = (2 ** 64 - 2) // (held + 1 + queries)
    fresh = iter([str(same_net[1 + i * step]) for i in range(held + 1 + queries)])

    conns = [slow(host, port, next(fresh)) for _ in range(held + 1)]
    time.sleep(0.3)  # a refused one is closed at once; give the closes time to arrive
    kept_same = sum(1 for c in conns if c is not None and is_open(c))
    extra = slow(host, port, str(other_net[7]))
    time.sleep(0.3)
    kept_other = extra is not None and is_open(extra)
    for c in [*conns, extra]:
        if c is not None:
            c.close()

    # The node forgets the closed connections as their closes arrive: until then a new one from
    # the /64 is refused before TLS (status 0), which spends none of its rate budget.
    deadline = time.monotonic() + 10
    first = next(fresh)
    while (status := unsigned_query(host, port, first)) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    started = time.monotonic()
    statuses_same = [status] + [unsigned_query(host, port, next(fresh)) for _ in range(queries - 1)]
    seconds = time.monotonic() - started
    status_other = unsigned_query(host, port, str(other_net[9]))
    print(json.dumps({"kept_same": kept_same, "kept_other": kept_other, "statuses_same": statuses_same,
                      "seconds": seconds, "status_other": status_other}))


if __name__ == "__main__":
    main()
