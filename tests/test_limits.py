"""Transport limits and fair shares, against real nodes over real TLS on loopback.

Slow and flooding clients here are real sockets. Loopback is all of 127.0.0.0/8 on Linux, so a
client can come from 127.0.0.2, 127.0.0.3, ... and be a different address to the node.

Every test of the connection guard (transport.py) runs on both event loops the node may use:
uvloop (the daemon's default) and asyncio's own (loops.py).
"""

import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import ssl
import subprocess
import sys
import time
from typing import Callable

import pytest

from discnode import loops
from discnode.fairshare import FairShare
from discnode.errors import RateLimited
from discnode.server import Limits
from discnode.transport import ACCEPT_BURST, EARLY_LIMIT, RESERVED_FDS, connection_cap, source
from tests.conftest import Cli
from tests.nodes import Network, free_port, signed
from tests.tlsprobe import HALF_HEAD, is_open, slow_over, tls_context
from tests.test_server import QUERY, add_profiles

DISCNODE = [sys.executable, "-m", "discnode"]


@pytest.fixture(params=loops.KINDS)
def loop_kind(request) -> str:
    return request.param


@pytest.fixture
def network(tmp_path, capsys, loop_kind):
    """Nodes on one loop of each kind in turn (this module's tests are the guard's)."""
    net = Network(tmp_path, capsys, loop=loop_kind)
    yield net
    net.stop()


_tls = tls_context


def port_of(node) -> int:
    return int(node.url.rsplit(":", 1)[1])


def slow_connection(port: int, source: str = "127.0.0.2", head: bytes = HALF_HEAD) -> ssl.SSLSocket | None:
    """A TLS connection that sends part of a request and then nothing; None if the node refused it."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    return slow_over(raw, head)


def closed_within(tls: ssl.SSLSocket, seconds: float) -> bool:
    """Keep the connection alive by sending one body byte every half second; True once the node
    closes it, False if it is still open after `seconds` (a loop bound, not a timing claim)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            tls.sendall(b"x")
        except (ssl.SSLError, OSError):
            return True
        if not is_open(tls):
            return True
        time.sleep(0.5)
    return False


def read_reply(tls: ssl.SSLSocket) -> tuple[bytes, bool]:
    """Everything the node sends until it closes the connection (True) or goes quiet for 8 s (False)."""
    tls.settimeout(8)
    data = b""
    try:
        while chunk := tls.recv(65536):
            data += chunk
    except (TimeoutError, socket.timeout):
        return data, False
    except (ssl.SSLError, OSError):
        pass
    return data, True


# --- item 5: deadlines -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/profiles/query", "/.well-known/discnode"])
def test_stalled_body_is_cut_at_the_request_deadline(network, path):
    b = network.node("B", limits=Limits(header_timeout=2, request_timeout=3))
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    tls = slow_connection(port_of(b), "127.0.0.1", head.encode())
    assert tls is not None
    with tls:
        # A byte every half second would take 500 s to finish the body; the deadline cuts it.
        assert closed_within(tls, 40), "a request trickling its body was never cut"


def test_declared_100_gb_body_is_refused_at_once_and_closed(network):
    b = network.node("B")  # default deadlines: 10 s for a head, 30 s for a request
    head = (b"POST /v1/profiles/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100000000000\r\n\r\n")
    tls = slow_connection(port_of(b), "127.0.0.1", head)
    assert tls is not None
    with tls:
        reply, closed = read_reply(tls)
    assert reply.startswith(b"HTTP/1.1 413"), reply[:100]
    assert b'"too_large"' in reply
    assert closed, "the connection stayed open after the 413, waiting for a body that was refused"


# --- item 5: connection caps -------------------------------------------------------------------


def test_one_address_cannot_hold_more_than_its_connections(network):
    a = network.node("A")
    b = network.node("B", limits=Limits(connections_per_address=4, header_timeout=60, request_timeout=60))
    network.agree(a, b)
    held = [slow_connection(port_of(b), "127.0.0.2") for _ in range(7)]
    try:
        accepted = [c for c in held if c is not None and is_open(c)]
        assert len(accepted) == 4
        body, headers = signed(a.home.identity, b, "POST", QUERY, {})
        from tests.nodes import send
        assert send(b, "POST", QUERY, body, headers)[0] == 200  # another address is still served
    finally:
        for c in held:
            if c is not None:
                c.close()


def test_partner_is_answered_when_slow_connections_fill_the_node(network):
    a = network.node("A")
    b = network.node("B", limits=Limits(max_connections=12, connections_per_address=4, header_timeout=60,
                                        request_timeout=60))
    network.agree(a, b)
    add_profiles(b, 2)
    held = [slow_connection(port_of(b), f"127.0.0.{2 + i // 4}") for i in range(20)]  # 5 addresses x 4
    try:
        # The partner's real signed request, from the Dataview, over a new connection.
        page = a.cli("search", "--json").json
        assert {p["status"] for p in page["peers"]} == {"ok"} and len(page["results"]) == 2, page
        still_open = [c for c in held if c is not None and is_open(c)]
        assert len(still_open) <= 12, "the node held more connections than its cap"
    finally:
        for c in held:
            if c is not None:
                c.close()


def test_connection_cap_is_below_the_descriptor_limit():
    for nofile in (256, 1024, 4096, 65536):
        cap = connection_cap(nofile)
        assert 8 <= cap <= nofile - RESERVED_FDS - ACCEPT_BURST


def _daemon(tmp_path, capsys, nofile: int, loop_kind: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    home = tmp_path / "node"
    # `init` by the real CLI in this process (as the `cli` fixture runs it): the daemon is the process
    # under test, not `init` (an interpreter start-up saved a test).
    Cli(home, capsys)("init", "--name", "Limits BCRP", "--port", str(port))
    env = {**os.environ, loops.ENV: loop_kind}
    proc = subprocess.Popen([*DISCNODE, "--home", str(home), "serve", "--no-advertise"], stderr=subprocess.PIPE,
                            text=True, env=env,
                            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile)))
    assert proc.stderr is not None
    for line in proc.stderr:
        assert "Traceback" not in line
        if "at most" in line:
            cap = int(line.split("at most ")[1].split()[0])
            assert cap <= nofile - RESERVED_FDS - ACCEPT_BURST, line
            assert f"event loop: {loop_kind}" in line, line
        if "serving Limits BCRP" in line:
            return proc, port
    raise AssertionError(f"serve exited with {proc.wait()}")


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def _get_descriptor(port: int) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, _tls().wrap_socket(raw) as tls:
        tls.sendall(b"GET /.well-known/discnode HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply, _ = read_reply(tls)
    return int(reply.split(b" ", 2)[1]) if reply else 0


def test_connection_flood_never_exhausts_the_daemons_descriptors(tmp_path, capsys, loop_kind):
    proc, port = _daemon(tmp_path, capsys, nofile=256, loop_kind=loop_kind)
    held = []
    try:
        # More connections than the daemon has descriptors, from 6 addresses (64 each at most).
        for i in range(300):
            try:
                raw = socket.create_connection(("127.0.0.1", port), timeout=10,
                                               source_address=(f"127.0.0.{2 + i % 6}", 0))
            except OSError:
                continue
            held.append(raw)
        assert _get_descriptor(port) == 200
    finally:
        for raw in held:
            raw.close()
        err = _stop(proc)
    assert "Too many open files" not in err and "accept" not in err.lower(), err[-2000:]
    assert "Traceback" not in err


def test_malformed_request_lines_are_summarised_without_tracebacks(tmp_path, capsys, loop_kind):
    proc, port = _daemon(tmp_path, capsys, nofile=1024, loop_kind=loop_kind)
    try:
        for _ in range(30):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, _tls().wrap_socket(raw) as tls:
                tls.sendall(b"GET /\x01\x02 HTTP/1.1\r\nHost: x\r\n\r\n")
                reply, _ = read_reply(tls)
                assert reply.split(b" ", 2)[1] == b"400", reply[:80]
    finally:
        err = _stop(proc)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "Error handling request" in line]
    assert 1 <= len(lines) <= 2, lines  # one line, then one per minute with a count
    assert all(len(line) < 400 for line in lines)


# --- item 6: fair shares -----------------------------------------------------------------------


_PINS: dict[str, object] = {}


async def _signed_query(session, src, dst) -> tuple[int, dict[str, str]]:
    import aiohttp
    body, headers = signed(src.home.identity, dst, "POST", QUERY, {})
    # aiohttp pools connections by the identity of the ssl argument: one pin per node, as client.py does.
    pin = _PINS.setdefault(dst.home.tls_fingerprint, aiohttp.Fingerprint(bytes.fromhex(dst.home.tls_fingerprint)))
    async with session.post(dst.url + QUERY, data=body, headers=headers, ssl=pin) as resp:
        await resp.read()
        return resp.status, dict(resp.headers)


def test_flooding_partner_gets_429_while_another_partners_requests_all_succeed(network):
    import aiohttp
    a, c = network.node("A"), network.node("C")
    b = network.node("B", limits=Limits(slots=1, peer_queue=1, rate=100_000, burst=100_000))
    network.agree(a, b)
    network.agree(c, b)
    add_profiles(b, 20)

    async def scenario():
        flood: list[tuple[int, dict[str, str]]] = []
        done = asyncio.Event()
        # The flooder comes from its own address, as partners do (one address may hold 64 connections).
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, local_addr=("127.0.0.2", 0))) as flooder, \
                aiohttp.ClientSession() as partner:
            async def one_flooder() -> None:
                for _ in range(10):  # bounded: at most 16 x 10 requests
                    if done.is_set():
                        return
                    try:
                        flood.append(await _signed_query(flooder, a, b))
                    except aiohttp.ClientError as exc:
                        flood.append((0, {"error": repr(exc)}))

            flooders = [asyncio.create_task(one_flooder()) for _ in range(16)]
            await asyncio.sleep(0.2)
            others = [await _signed_query(partner, c, b) for _ in range(5)]
            done.set()
            await asyncio.gather(*flooders)
        return flood, others

    flood, others = network.loop.run(scenario(), timeout=300)
    assert [status for status, _ in others] == [200] * 5
    refused = [headers for status, headers in flood if status == 429]
    assert refused, "the flooding partner was never told to slow down"
    assert all(int(h["Retry-After"]) >= 1 for h in refused)
    assert all(status in (200, 429) for status, _ in flood), [h for s, h in flood if s == 0][:3]


def test_rate_limited_reply_says_when_to_retry(network):
    import aiohttp
    a = network.node("A")
    b = network.node("B", limits=Limits(rate=0.5, burst=2))
    network.agree(a, b)

    async def burst():
        async with aiohttp.ClientSession() as session:
            return [await _signed_query(session, a, b) for _ in range(4)]

    replies = network.loop.run(burst())
    assert replies[-1][0] == 429 and int(replies[-1][1]["Retry-After"]) >= 1


def test_turns_go_round_the_partners():
    """Pure scheduling: with one slot, a partner with five requests waiting and a partner with one
    alternate; past its queue depth a partner is refused at once."""
    async def run() -> list[str]:
        share = FairShare(slots=1, depth=4)
        order: list[str] = []

        async def request(peer: str, turn) -> None:
            async with turn:
                order.append(peer)
                await asyncio.sleep(0)

        first = share.claim("flood")
        turns = [("flood", first)] + [("flood", share.claim("flood")) for _ in range(4)]
        with pytest.raises(RateLimited):
            share.claim("flood")  # a fifth waiting request
        turns.append(("other", share.claim("other")))
        await asyncio.gather(*(request(peer, turn) for peer, turn in turns))
        assert share.running == 0 and not share.waiting
        return order

    order = asyncio.run(run())
    assert order.index("other") <= 2, order  # not behind the flood's whole queue


def test_service_unit_sets_a_descriptor_limit_and_runs_what_the_readme_installs():
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    unit = (root / "examples" / "discnode.service").read_text()
    readme = (root / "README.md").read_text()
    nofile = int(unit.split("\nLimitNOFILE=")[1].split()[0])
    assert connection_cap(nofile) <= nofile - RESERVED_FDS - ACCEPT_BURST
    exec_start = unit.split("\nExecStart=")[1].split()[0]
    assert exec_start == "/opt/discnode/bin/discnode"
    assert "sudo python3 -m venv /opt/discnode && sudo /opt/discnode/bin/pip install" in readme


def test_idle_connections_of_an_address_make_room_for_its_new_ones(network):
    b = network.node("B", limits=Limits(connections_per_address=3))
    port = port_of(b)
    idle = []
    for _ in range(3):  # three keep-alive connections, each done with its request
        tls = slow_connection(port, "127.0.0.2", b"GET /.well-known/discnode HTTP/1.1\r\nHost: x\r\n\r\n")
        assert tls is not None
        tls.settimeout(10)
        reply = tls.recv(65536)
        while b"}" not in reply:  # the whole reply (a JSON descriptor), so that nothing is left unread
            reply += tls.recv(65536)
        assert reply.startswith(b"HTTP/1.1 200")
        idle.append(tls)
    try:
        fresh = slow_connection(port, "127.0.0.2", b"GET /.well-known/discnode HTTP/1.1\r\nHost: x\r\n"
                                                   b"Connection: close\r\n\r\n")
        assert fresh is not None
        with fresh:
            reply, _ = read_reply(fresh)
        assert reply.startswith(b"HTTP/1.1 200")
        assert sum(is_open(c) for c in idle) == 2  # the oldest idle one gave way
    finally:
        for c in idle:
            c.close()


def _tls_over(raw: socket.socket, obj: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
              step) -> object:
    """Run one SSLObject operation to completion over a blocking socket (the handshake, a read)."""
    while True:
        try:
            result = step()
        except ssl.SSLWantReadError:
            raw.sendall(outgoing.read())
            data = raw.recv(65536)
            if not data:
                raise ConnectionError("closed")
            incoming.write(data)
            continue
        raw.sendall(outgoing.read())
        return result


def test_handshake_waiting_when_the_node_accepts_reaches_tls_and_is_answered(network):
    """The ClientHello is already in the socket when the node accepts the connection (the loop is
    held until it is sent): uvloop reads it before start_tls takes the transport over, and it must
    reach TLS (it was dropped, and the handshake timed out)."""
    import threading
    b = network.node("B")
    for _ in range(3):
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = _tls().wrap_bio(incoming, outgoing)
        with pytest.raises(ssl.SSLWantReadError):
            obj.do_handshake()
        hello = outgoing.read()
        sent = threading.Event()
        network.loop.loop.call_soon_threadsafe(sent.wait, 10)  # the node's loop waits for the hello
        with socket.create_connection(("127.0.0.1", port_of(b)), timeout=10) as raw:
            raw.sendall(hello)
            sent.set()
            _tls_over(raw, obj, incoming, outgoing, obj.do_handshake)
            obj.write(b"GET /.well-known/discnode HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            reply = _tls_over(raw, obj, incoming, outgoing, lambda: obj.read(65536))
        assert reply.startswith(b"HTTP/1.1 200"), reply[:80]


def test_bytes_that_are_not_tls_are_cut_and_the_node_answers_others(network):
    """A client that pours bytes that are not TLS before any answer is cut (held at most EARLY_LIMIT)."""
    b = network.node("B")
    with socket.create_connection(("127.0.0.1", port_of(b)), timeout=10) as raw:
        sent = 0
        try:
            while sent < 4 * EARLY_LIMIT:
                raw.sendall(b"\x16" * 4096)  # not a TLS record: no handshake comes of it either
                sent += 4096
        except OSError:
            pass  # cut while sending
        raw.settimeout(10)
        try:
            tail = raw.recv(65536)
            while tail:  # a TLS alert, then the close
                tail = raw.recv(65536)
        except ConnectionResetError:
            pass
    # The node still answers others.
    assert _get_descriptor(port_of(b)) == 200


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0) rather than a FIN."""
    import struct
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_connections_dropped_at_every_stage_of_the_gate_give_back_their_address_count(network):
    """A stranger that hangs up (FIN or reset) before TLS, in the middle of a ClientHello the gate
    holds, after a whole one, after the handshake, or after bytes that are not TLS, each more times
    than its address may hold connections: every one is forgotten, and the address is served."""
    b = network.node("B", limits=Limits(connections_per_address=3))
    port, pool = port_of(b), b.running.connections
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    with pytest.raises(ssl.SSLWantReadError):
        _tls().wrap_bio(incoming, outgoing).do_handshake()
    hello = outgoing.read()

    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.7", 0))

    def handshake_then_reset() -> None:
        raw = connect()
        tls = _tls().wrap_socket(raw)
        _reset(tls)

    def hangs_up(data: bytes, reset: bool) -> Callable[[], None]:
        def run() -> None:
            raw = connect()
            if data:
                raw.sendall(data)
            _reset(raw) if reset else raw.close()
        return run
    ways = [hangs_up(b"", False), hangs_up(b"", True), hangs_up(hello[:40], False), hangs_up(hello[:40], True),
            hangs_up(hello, True), hangs_up(b"GET / HTTP/1.1\r\n\r\n", False), handshake_then_reset]
    for number, way in enumerate(ways):
        for _ in range(4):  # one more than the address may hold (refused while the others are counted)
            with contextlib.suppress(ssl.SSLError, OSError):
                way()
        # Served from another address once the node has accepted everything sent before it.
        assert _served(port, "127.0.0.8")
        deadline = time.monotonic() + 5
        while network.loop.run(_counts(pool, "127.0.0.7")) != (0, 0) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert network.loop.run(_counts(pool, "127.0.0.7")) == (0, 0), number
    assert _served(port, "127.0.0.7")


def _served(port: int, source: str) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as raw, \
            _tls().wrap_socket(raw) as tls:
        tls.sendall(b"GET /.well-known/discnode HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply, _ = read_reply(tls)
    return reply.startswith(b"HTTP/1.1 200")


async def _counts(pool, address: str) -> tuple[int, int]:
    """The connections the node holds from address, and its count of them."""
    return sum(g.address == address for g in pool.live), pool.per_address.get(address, 0)


@pytest.mark.parametrize("host, counted_as", [
    ("203.0.113.7", "203.0.113.7"),
    ("127.0.0.1", "127.0.0.1"),
    ("::ffff:203.0.113.7", "203.0.113.7"),            # IPv4-mapped: the IPv4 address it carries
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("fe80::1%eth0", "fe80::/64"),                    # a link-local scope is not part of the address
    ("::1", "::/64"),
    ("not an address", "not an address"),
])
def test_an_ipv6_64_is_counted_as_one_address_and_an_ipv4_mapped_one_as_its_ipv4(host, counted_as):
    """The connection cap and the rate limit count sources by transport.source: a host holding a
    /64 cannot escape them by sending from a fresh address each time."""
    assert source(host) == counted_as


def test_every_address_of_one_ipv6_64_shares_one_count_and_the_next_64_has_its_own():
    import ipaddress
    import random
    rng = random.Random(7)
    net = ipaddress.IPv6Network("2001:db8:aa:bb::/64")
    keys = {source(str(net[rng.getrandbits(64)])) for _ in range(1000)}
    assert keys == {"2001:db8:aa:bb::/64"}
    assert source("2001:db8:aa:bc::1") != source("2001:db8:aa:bb::1")


def test_a_real_ipv6_64_shares_one_connection_cap_and_one_rate_budget(tmp_path, capsys):
    """End to end, over real TCP and TLS in a namespace of the test's own where two /64s are routed
    locally: a client sending each connection from a fresh address of one /64 is held to one
    address's 64 connections, and each request from a fresh address to one address's rate budget;
    a client in the next /64 is not. (Counted per exact address, all 65 connections stayed and no
    request was ever refused 429.)"""
    from tests.conftest import Cli
    from tests.netns import LocalPrefixes, wait_for_log
    node, same, other = "fd00:d15c:0:1::1", "fd00:d15c:0:2::/64", "fd00:d15c:0:3::/64"
    home, log = tmp_path / "B", tmp_path / "b.log"
    Cli(home, capsys)("init", "--name", "Beta BCRP", "--host", node, "--port", "8443")
    with LocalPrefixes(node, [same, other]) as host:
        # --rate-limit 0.2: a peer's burst is 1, an address's five times that, refilled at 1 a second.
        host.start(*DISCNODE, "--home", str(home), "serve", "--rate-limit", "0.2", log=log)
        wait_for_log(log, "serving")
        probe = os.path.join(os.path.dirname(__file__), "ipv6_sources.py")
        r = subprocess.run(host.cmd(sys.executable, probe, node, "8443", same, other, "64"),
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["kept_same"] == 64, seen  # the 65th address of the /64 was refused before TLS
    assert seen["kept_other"], seen
    statuses = seen["statuses_same"]
    assert set(statuses) <= {401, 429}, statuses  # unsigned: refused, never served
    served = sum(1 for s in statuses if s == 401)
    assert 429 in statuses and served <= 5 + seen["seconds"] + 1, seen
    assert seen["status_other"] == 401, seen


def _verified_then_slow(partner, node, source: str) -> ssl.SSLSocket:
    """A connection that carries one signed query of `partner` (answered 200), then sends half of
    the next request head and nothing more: a partner's connection, busy, that never finishes."""
    body, headers = signed(partner.home.identity, node, "POST", QUERY, {})
    raw = socket.create_connection(("127.0.0.1", port_of(node)), timeout=10, source_address=(source, 0))
    tls = _tls().wrap_socket(raw)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    tls.sendall(f"POST {QUERY} HTTP/1.1\r\nHost: 127.0.0.1:{port_of(node)}\r\n{head}"
                f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += tls.recv(65536)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
    tls.sendall(f"POST {QUERY} HTTP/1.1\r\nHost: x\r\n".encode())
    return tls


def test_a_hostile_partner_holding_every_connection_cannot_keep_another_partner_out(network):
    """A partner turned hostile fills the node's total with connections from many addresses, each
    of which carried one of its verified queries and is now in the middle of another. Only its first
    connections_per_peer of them are kept from giving way, so another partner's search still gets
    through (before T165 every one was kept, and the other partner was refused a connection)."""
    hostile, other = network.node("H"), network.node("C")
    b = network.node("B", limits=Limits(max_connections=12, connections_per_peer=4, header_timeout=60,
                                        request_timeout=60))
    network.agree(hostile, b)
    network.agree(other, b)
    add_profiles(b, 2)
    held = [_verified_then_slow(hostile, b, f"127.0.0.{2 + i}") for i in range(12)]
    try:
        pool = b.running.connections
        assert len(pool.live) == 12
        page = other.cli("search", "--json").json
        assert {p["status"] for p in page["peers"]} == {"ok"} and len(page["results"]) == 2, page
        # Only the hostile partner's connections past its kept four gave way.
        assert sum(1 for c in held if is_open(c)) >= 4 and len(pool.live) <= 12
        assert dict(pool.per_peer).get(hostile.node_id) == 4
    finally:
        for c in held:
            c.close()
