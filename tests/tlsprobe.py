"""A stranger's TLS connections to a node, as plain sockets: used by test_limits.py in the test
process and by ipv6_sources.py inside a network namespace (so: the standard library only)."""

from __future__ import annotations

import select
import socket
import ssl

HALF_HEAD = b"GET /.well-known/discnode HTTP/1.1\r\nHost: x\r\n"


def tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx


def slow_over(raw: socket.socket, head: bytes = HALF_HEAD) -> ssl.SSLSocket | None:
    """TLS over `raw`, then part of a request and nothing more; None if the node refused it."""
    try:
        tls = tls_context().wrap_socket(raw)
        tls.sendall(head)
        return tls
    except (ssl.SSLError, OSError):
        raw.close()
        return None


def is_open(tls: ssl.SSLSocket) -> bool:
    """True unless the node has closed (or reset) the connection."""
    readable, _, _ = select.select([tls], [], [], 0.2)
    if not readable:
        return True
    tls.setblocking(False)
    try:
        return tls.recv(1) != b""
    except ssl.SSLWantReadError:  # only TLS housekeeping (session tickets) was waiting
        return True
    except (ssl.SSLError, OSError):
        return False
    finally:
        tls.setblocking(True)
