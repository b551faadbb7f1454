"""Real nodes for integration tests: real HTTPS on loopback, real SQLite files, real signatures.

The servers run on one event loop in a background thread, so that the test thread can drive them
through the real CLI (which runs its own asyncio loop per command), exactly as an administrator would.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from discnode import loops, server
from discnode.home import Home
from tests.conftest import Cli


def audit_events(node: "Node", *names: str) -> list[tuple[str, str, Any]]:
    """(event, peer, detail) of the node's audit entries of these events, oldest first."""
    from discnode import audit
    h = Home.open(node.cli.home)
    try:
        return [(e["event"], e["peer"], e["detail"]) for e in audit.entries(h.db) if e["event"] in names]
    finally:
        h.close()


#: Where free_port looks: below Linux's ephemeral range (32768 up), where the kernel hands no port
#: to an outgoing connection or a bind to port 0, and below the benchmarks' (12000-32000).
PORTS = range(2000, 12000)


def _port_slice() -> range:
    """This process's share of PORTS: under pytest-xdist, each worker its own slice, so that two
    workers never hand out the same port; otherwise all of it."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not (worker.startswith("gw") and worker[2:].isdigit() and count.isdigit() and int(count) > 0):
        return PORTS
    size = len(PORTS) // int(count)
    start = PORTS.start + int(worker[2:]) % int(count) * size
    return range(start, start + size)


def free_port() -> int:
    """A loopback port free now, for a node to listen on once started. A port got by binding to
    port 0 and closing is free again for any other process (another xdist worker, or an outgoing
    connection) until the node binds it; one from this process's own slice below the ephemeral
    range is handed to no other worker meanwhile. Picked at random (other test runs may share the
    machine), each checked free."""
    ports, pick = _port_slice(), random.SystemRandom()
    for _ in range(200):
        port = pick.choice(ports)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free loopback port in {ports}")


class LoopThread:
    def __init__(self, kind: str | None = None) -> None:
        self.loop = loops.new_event_loop(kind)  # the daemon's (uvloop where installed) unless asked
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="nodes")
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            # uvloop frees a loop's descriptors only when it is closed (asyncio's does it when collected).
            self.loop.close()


@dataclass
class Node:
    name: str
    cli: Cli
    loop: LoopThread
    limits: server.Limits
    running: server.Running | None = None
    home: Home | None = None

    @property
    def node_id(self) -> str:
        return self.cli("id", "--json").json["node_id"]

    @property
    def url(self) -> str:
        return self.cli("id", "--json").json["url"]

    def start(self) -> "Node":
        self.home = Home.open(self.cli.home)
        self.running = self.loop.run(server.start(self.home, self.limits))
        return self

    def stop(self) -> None:
        if self.running:
            self.loop.run(self.running.stop())
            self.running = None
        if self.home:
            self.home.close()
            self.home = None


class Network:
    def __init__(self, root: Path, capsys: Any, loop: str | None = None) -> None:
        self.root = root
        self.capsys = capsys
        self.loop = LoopThread(loop)
        self.nodes: list[Node] = []

    def node(self, name: str, *, start: bool = True, limits: server.Limits = server.Limits()) -> Node:
        cli = Cli(self.root / name, self.capsys)
        cli("init", "--name", f"{name} BCRP", "--port", str(free_port()))
        node = Node(name, cli, self.loop, limits)
        self.nodes.append(node)
        return node.start() if start else node

    def agree(self, a: Node, b: Node, *share: str, conditions: tuple[str, ...] = ()) -> None:
        """An agreement offered by a, accepted by b; sharing `share` (default: profiles, images)
        and, with `conditional`, taking records graded C under `conditions`."""
        scopes = [arg for scope in share for arg in ("--share", scope)]
        extra = [arg for code in conditions for arg in ("--handling-condition", code)]
        a.cli("peer", "add", b.url, "--expect", b.node_id, *scopes, *extra)
        b.cli("peer", "accept", a.node_id)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.loop.stop()


async def _raw(url: str, fingerprint: str, method: str, path: str, body: bytes, headers: dict[str, str]
               ) -> tuple[int, Any]:
    import aiohttp
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url + path, data=body or None, headers=headers,
                                   ssl=aiohttp.Fingerprint(bytes.fromhex(fingerprint))) as resp:
            raw = await resp.read()
            try:
                import json
                return resp.status, json.loads(raw)
            except ValueError:
                return resp.status, raw


def signed(identity: Any, target: Node, method: str, path: str, payload: Any = None, *,
           now: int | None = None, destination: str | None = None) -> tuple[bytes, dict[str, str]]:
    """A request exactly as a peer would sign it, for tests to send as is or to tamper with."""
    import json
    from discnode.signing import sign_request
    body = b"" if payload is None else json.dumps(payload).encode()
    headers = sign_request(identity, method, target.url + path, body, destination or target.node_id, now=now)
    if payload is not None:
        headers["Content-Type"] = "application/json"
    return body, headers


def send(target: Node, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    assert target.home is not None
    return target.loop.run(_raw(target.url, target.home.tls_fingerprint, method, path, body, headers))


class Impostor:
    """Listens where a stopped node was, and never speaks: it either holds every connection open
    (a hung peer) or hangs up at once (hang_up=True). Counts the connection attempts."""

    def __init__(self, port: int, *, hang_up: bool = False) -> None:
        self.hang_up = hang_up
        self.attempts = 0
        self.conns: list[socket.socket] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.attempts += 1
            if self.hang_up:
                conn.close()
            else:
                self.conns.append(conn)

    def close(self) -> None:
        self.sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close alone does not
        self.sock.close()
        self.thread.join(5)
        for conn in self.conns:
            conn.close()
