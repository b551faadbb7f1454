"""The peer API's connections, below HTTP: how many, from where, and for how long.

aiohttp bounds neither how many connections a server holds nor how long a request may take to
arrive (its keep-alive timer only covers idle connections), and asyncio hands it connections only
after their TLS handshake, when a descriptor is already spent. So the node accepts plain TCP itself,
counts and refuses there (before TLS, at the cost of one accept and one close), then starts TLS and
hands the connection to aiohttp through a `Guard` that sees every byte arrive:

- at most `per_address` connections from one address (an IPv6 /64 counts as one address: see
  `source`; an idle keep-alive one of that address makes
  room for a new one), and `total` in all, sized below the process's file-descriptor limit so that
  accept() never fails for want of one;
- when the total is reached, a new connection takes the place of the oldest one that has not yet
  carried a verified peer request (a thousand slow strangers cannot keep a partner out); only
  `per_peer` connections of one partner are kept from giving way like that, so that a partner
  turned hostile, holding connections from many addresses, cannot keep the other partners out
  either;
- a request head must arrive within `header_timeout` of its first byte (or of the connection's
  start), and the whole request, head, body and reply, within `request_timeout`: a connection that
  sends a head and then a byte every few seconds is cut at its deadline.

asyncio has no per-connection accept hook; writing this by hand is the least code that does it.
It runs on asyncio's own loop and on uvloop's alike (tests/test_limits.py runs on both): the one
difference that matters is that uvloop starts reading as soon as `connection_made` returns, whatever
the protocol paused there, so a client's first TLS bytes can reach the gate before `start_tls` takes
the transport over. The gate holds them, and hands them to TLS ahead of anything read after.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import resource
import ssl
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

#: Descriptors kept back from connections: SQLite (a writer and readers, each with WAL and shm
#: files), images being read, logs, mDNS, the node's own outbound connections.
RESERVED_FDS = 64
#: asyncio accepts up to this many connections in one go (the listen backlog), before any of them
#: is admitted or refused: their descriptors must fit too.
ACCEPT_BURST = 32
#: Bursts whose descriptors can be open at once: asyncio admits a connection two loop turns after
#: accepting it (a task step, then connection_made) and frees a refused one a turn later, while
#: it goes on accepting a burst every turn. Counting one burst let 300 connections reach EMFILE
#: at 256 descriptors about one run in six.
BURSTS_IN_FLIGHT = 3
#: Even with a large descriptor limit, more connections than this only cost memory (each TLS
#: connection holds its buffers).
MAX_TOTAL = 4096
#: Bytes a connection may send before TLS takes it over (held, then handed to TLS: see `_Gate`).
#: A ClientHello is one TLS record of at most 16 KiB; a client sending more before any answer is
#: not speaking TLS, and is cut.
EARLY_LIMIT = 65536


def descriptor_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return MAX_TOTAL * 2 if soft == resource.RLIM_INFINITY else int(soft)


def connection_cap(nofile: int) -> int:
    """Connections the node holds at once, given its descriptor limit: three quarters of what is
    left after the reserve and the accept bursts in flight, so that the cap is always reached
    before the limit."""
    return max(8, min(MAX_TOTAL, (nofile - RESERVED_FDS - BURSTS_IN_FLIGHT * ACCEPT_BURST) * 3 // 4))


@dataclass(frozen=True)
class ConnectionLimits:
    total: int
    per_address: int
    #: Connections of one partner that never give way to new ones (its verified ones, the first
    #: this many): past them, its connections are taken like a stranger's when the total is reached.
    per_peer: int
    header_timeout: float
    request_timeout: float
    handshake_timeout: float


class Guard(asyncio.Protocol):
    """One accepted connection: the application protocol under TLS, passing everything on to the
    aiohttp request handler while keeping the times the deadlines are measured from."""

    def __init__(self, pool: "Connections", address: str, raw: asyncio.Transport) -> None:
        self.pool, self.address, self.raw = pool, address, raw
        self.handler: Any = None
        #: Kept when the total is reached: it carried a verified request from `peer`, one of the
        #: first `per_peer` connections of that partner to do so.
        self.trusted = False
        self.peer: str | None = None
        self.started: float | None = pool.loop.time()  # the TLS handshake counts as a request head
        self.head_done = False
        self.released = False
        self._early: list[bytes] = []  # bytes that came with the end of the handshake

    def attach(self, handler: Any, tls: asyncio.BaseTransport) -> None:
        self.handler = handler
        handler.connection_made(tls)
        for data in self._early:
            handler.data_received(data)
        self._early.clear()

    # --- what the deadlines measure ---

    def head_received(self) -> None:
        if self.started is None:  # a pipelined request, whose bytes came with the previous one
            self.started = self.pool.loop.time()
        self.head_done = True

    def reply_sent(self) -> None:
        self.started, self.head_done = None, False

    def overdue(self, now: float) -> bool:
        if self.started is None:
            return False
        limit = self.pool.limits.request_timeout if self.head_done else self.pool.limits.header_timeout
        return now - self.started > limit

    def cut(self) -> None:
        """Close at once, whatever state TLS and HTTP are in."""
        self.raw.abort()
        self.release()

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.pool.forget(self)

    # --- asyncio.Protocol, passed on ---

    def data_received(self, data: bytes) -> None:
        if self.started is None:
            self.started, self.head_done = self.pool.loop.time(), False
        if self.handler is not None:
            self.handler.data_received(data)
        elif sum(map(len, self._early)) < 65536:
            self._early.append(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received() if self.handler is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.release()
        if self.handler is not None:
            self.handler.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()


def source(host: str) -> str:
    """The address a connection is counted and rate-limited by: an IPv4 address as it is (an
    IPv4-mapped IPv6 one as the IPv4 address it carries), an IPv6 address as its /64. One host, or
    one site, is routinely given a whole /64 and can send from any of its 2**64 addresses, so
    counting IPv6 addresses one by one would let one hostile host escape every per-address limit.
    Anything else (no address, a Unix socket) is counted as given."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])  # a link-local scope is not the address
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class _Gate(asyncio.Protocol):
    """The protocol of a freshly accepted TCP connection: admit it (or close it), then start TLS."""

    def __init__(self, pool: "Connections") -> None:
        self.pool = pool
        self.guard: Guard | None = None
        self.held = bytearray()  # bytes read before TLS took the transport over (uvloop only)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not asyncio.Transport: uvloop's transports implement it without subclassing it.
        raw: Any = transport
        peer = raw.get_extra_info("peername")
        address = source(str(peer[0])) if peer else "?"
        if not self.pool.admit(address):
            raw.abort()
            return
        raw.pause_reading()  # asyncio reads nothing before TLS starts; uvloop resumes once we return
        self.guard = self.pool.add(address, raw, self)

    def data_received(self, data: bytes) -> None:
        # uvloop: the start of the handshake, read before start_tls paused the transport again.
        self.held += data
        if len(self.held) > EARLY_LIMIT and self.guard is not None:
            self.guard.cut()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.guard is not None:  # lost before TLS took the connection over
            self.guard.release()


def _feed(protocol: Any, data: bytes) -> None:
    """Pass bytes to a protocol as a transport would: in chunks of the buffers a BufferedProtocol
    (asyncio's and uvloop's TLS both are) hands out, or whole to data_received. asyncio's own helper
    for this (protocols._feed_data_to_buffered_proto) is private."""
    if not hasattr(protocol, "buffer_updated"):
        protocol.data_received(data)
        return
    view = memoryview(data)
    while view:
        buf = protocol.get_buffer(len(view))
        n = min(len(buf), len(view))
        if n == 0:
            raise RuntimeError("get_buffer() returned an empty buffer")
        buf[:n] = view[:n]
        protocol.buffer_updated(n)
        view = view[n:]


class Connections:
    """Every connection the peer API holds, with the counts and the timer that enforce the limits."""

    def __init__(self, limits: ConnectionLimits, tls: ssl.SSLContext, make_handler: Callable[[], Any]) -> None:
        self.limits, self.tls, self.make_handler = limits, tls, make_handler
        self.loop = asyncio.get_running_loop()
        self.live: dict[Guard, None] = {}  # in order of arrival: the oldest first
        self.per_address: Counter[str] = Counter()
        self.per_peer: Counter[str] = Counter()  # trusted connections of each partner
        self.by_handler: dict[int, Guard] = {}
        self.refused = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper = self.loop.create_task(self._sweep(), name="connection-deadlines")

    def protocol_factory(self) -> asyncio.Protocol:
        return _Gate(self)

    def admit(self, address: str) -> bool:
        if self.per_address[address] >= self.limits.per_address:
            # An idle keep-alive connection of that address gives way (its client can reconnect);
            # connections in the middle of a request (a slow client's) never do.
            idle = next((g for g in self.live if g.address == address and g.started is None), None)
            if idle is None:
                self.refused += 1
                return False
            idle.cut()
        if len(self.live) >= self.limits.total:
            victim = next((g for g in self.live if not g.trusted), None)
            if victim is None:
                self.refused += 1
                return False
            victim.cut()
        return True

    def add(self, address: str, raw: asyncio.Transport, gate: _Gate) -> Guard:
        guard = Guard(self, address, raw)
        self.live[guard] = None
        self.per_address[address] += 1
        task = self.loop.create_task(self._start_tls(guard, gate), name="tls-handshake")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return guard

    async def _start_tls(self, guard: Guard, gate: _Gate) -> None:
        starting = self.loop.start_tls(guard.raw, guard, self.tls, server_side=True,
                                       ssl_handshake_timeout=self.limits.handshake_timeout)
        # Runs once this task step is over, so after start_tls's own first step (pause the
        # transport, put TLS in the gate's place, schedule TLS's connection_made): the held bytes
        # go into TLS's input before the handshake starts and before reading resumes, in order.
        self.loop.call_soon(self._hand_over, guard, gate)
        try:
            tls = await starting
        except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError):
            guard.cut()  # a failed or abandoned handshake: nothing to log per connection
            return
        if guard.released or tls is None:
            return
        handler = self.make_handler()
        self.by_handler[id(handler)] = guard
        guard.attach(handler, tls)

    @staticmethod
    def _hand_over(guard: Guard, gate: _Gate) -> None:
        if not gate.held or guard.released:
            return
        tls = guard.raw.get_protocol()
        if tls is gate:  # start_tls failed before taking the transport: it is being cut
            return
        data, gate.held = bytes(gate.held), bytearray()
        _feed(tls, data)

    def trust(self, guard: Guard, peer: str) -> None:
        """`guard` carried a request verified as `peer`'s: keep it when the total is reached, if
        that partner's kept connections leave room."""
        if guard.trusted or guard.released or self.per_peer[peer] >= self.limits.per_peer:
            return
        guard.trusted, guard.peer = True, peer
        self.per_peer[peer] += 1

    def forget(self, guard: Guard) -> None:
        self.live.pop(guard, None)
        self.per_address[guard.address] -= 1
        if self.per_address[guard.address] <= 0:
            del self.per_address[guard.address]
        if guard.trusted and guard.peer is not None:
            self.per_peer[guard.peer] -= 1
            if self.per_peer[guard.peer] <= 0:
                del self.per_peer[guard.peer]
        if guard.handler is not None:
            self.by_handler.pop(id(guard.handler), None)

    def guard_of(self, handler: Any) -> Guard | None:
        return self.by_handler.get(id(handler))

    async def _sweep(self) -> None:
        tick = min(1.0, self.limits.header_timeout / 4, self.limits.request_timeout / 4)
        while True:
            await asyncio.sleep(tick)
            now = self.loop.time()
            for guard in [g for g in self.live if g.overdue(now)]:
                guard.cut()

    async def close(self) -> None:
        self._sweeper.cancel()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sweeper
        for guard in list(self.live):
            guard.cut()
