"""Hostile peers for tests: real aiohttp servers, on loopback, each with its own discnode identity.

- `HostilePeer`: an HTTPS server with a real node home (Ed25519 key, TLS certificate, database),
  whose answer to each request the test chooses (serve its signed descriptor, redirect, lie, ...),
  and which records every request it receives. It can offer itself to a real node (a properly
  signed offer), and sign records as their origin, so it can also play a *consenting* partner.
- `InternalService`: a plain-http listener standing for a service inside the administrator's
  network (an admin panel, a metadata endpoint); it counts every request that reaches it.
- `stranger_offer`: a throw-away identity offering itself, optionally from another loopback address.

Tests drive them through `tests.nodes.LoopThread`, like real nodes.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import aiohttp
from aiohttp import web

from discnode import profiles, store
from discnode.consent import Action, Terms, new_offer, new_response
from discnode.home import DESCRIPTOR_PATH, Config, Home, today
from discnode.identity import Identity
from discnode.signing import document_hash, sign_document, sign_request
from tests.nodes import LoopThread, Node, free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Recorder:
    """A catch-all aiohttp app that records each request and answers from a per-route table."""

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        self.hits: list[tuple[str, str]] = []
        self.routes: dict[tuple[str, str], Handler] = {}
        self.runner: web.AppRunner | None = None

    def hits_on(self, method: str | None = None, path: str | None = None) -> int:
        return sum(1 for m, p in self.hits if method in (None, m) and path in (None, p))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.hits.append((request.method, request.path))
        handler = self.routes.get((request.method, request.path)) or self.routes.get(("*", request.path)) \
            or self.routes.get(("*", "*"))
        if handler is None:
            return web.json_response({"error": {"code": "not_found", "message": "no"}}, status=404)
        return await handler(request)

    async def _start(self, port: int, ssl_context: ssl.SSLContext | None) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port, ssl_context=ssl_context).start()

    def stop_listening(self) -> None:
        if self.runner is not None:
            self.loop.run(self.runner.cleanup())
            self.runner = None

    def stop(self) -> None:
        self.stop_listening()


class InternalService(_Recorder):
    """Plain http on loopback, standing for a service no peer should ever make this node reach."""

    def __init__(self, loop: LoopThread) -> None:
        super().__init__(loop)
        self.port = free_port()
        self.loop.run(self._start(self.port, None))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def redirect(location: str, status: int = 307) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": location})
    return handler


def answer(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(payload, status=status, headers=headers)
    return handler


class HostilePeer(_Recorder):
    """An HTTPS server with its own discnode identity. By default it serves its signed descriptor
    and answers 404 to everything else; `routes[(METHOD, PATH)]` (or ("*", PATH), ("*", "*"))
    changes that. With `tls_home`, it presents that home's certificate instead of its own (while its
    descriptor still names its own)."""

    def __init__(self, root: Path, loop: LoopThread, name: str = "Hostile BCRP", *,
                 tls_home: Home | None = None) -> None:
        super().__init__(loop)
        self.port = free_port()
        self.home = Home.create(root / f"{name.replace(' ', '-').lower()}-{self.port}", Config(name=name, port=self.port))
        self.routes[("GET", DESCRIPTOR_PATH)] = self._descriptor
        tls = tls_home or self.home
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.load_cert_chain(tls.tls_cert, tls.tls_key)
        self.loop.run(self._start(self.port, ctx))

    def present(self, tls_home: Home, max_version: ssl.TLSVersion | None = None) -> None:
        """Restart on the same port presenting `tls_home`'s certificate (its descriptor unchanged),
        speaking TLS no later than `max_version` if given."""
        self.stop_listening()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls_home.tls_cert, tls_home.tls_key)
        if max_version is not None:
            ctx.maximum_version = max_version
        self.loop.run(self._start(self.port, ctx))

    async def _descriptor(self, request: web.Request) -> web.Response:
        return web.json_response(self.home.descriptor())

    @property
    def node_id(self) -> str:
        return self.home.node_id

    @property
    def url(self) -> str:
        return self.home.config.url

    def offer(self, target: Node) -> tuple[int, Any]:
        """Offer sharing to `target`, exactly as a node would: a signed offer in a signed request."""
        doc = sign_document(new_offer(self.node_id, target.node_id, Terms.default(today()), self.home.descriptor(),
                                      store.now_ts(), None), self.home.identity)
        return post_signed(self.loop, self.home.identity, target, "/v1/consent", doc)

    def accept_from(self, target: Node) -> None:
        """After `target` offered to this peer: accept, signed, so that the agreement is active."""
        assert target.home is not None
        offers = [d for d in _documents(target) if d["type"] == "offer" and d["to"] == self.node_id]
        doc = sign_document(new_response(Action.ACCEPT, self.node_id, target.node_id, document_hash(offers[-1]), store.now_ts()),
                            self.home.identity)
        status, body = post_signed(self.loop, self.home.identity, target, "/v1/consent", doc)
        assert status == 200, body

    def add_profile(self, **fields: Any) -> dict[str, Any]:
        """A profile signed by this peer as its origin (a valid record, for a lying reply around it)."""
        base = {"first_name": "Rhys", "last_name": "Hostile", "status": "identified", "local_only": False}
        return profiles.add(self.home, {**base, **fields})

    def stop(self) -> None:
        super().stop()
        self.home.close()


def _documents(target: Node) -> list[dict[str, Any]]:
    assert target.home is not None
    return [json.loads(r[0]) for r in target.home.db.execute("SELECT doc FROM consent_docs ORDER BY issued_at")]


async def _post(url: str, fingerprint: str, body: bytes, headers: dict[str, str], source: str
                ) -> tuple[int, Any, dict[str, str]]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.post(url, data=body, headers=headers, allow_redirects=False,
                                ssl=aiohttp.Fingerprint(bytes.fromhex(fingerprint))) as resp:
            raw = await resp.read()
            try:
                return resp.status, json.loads(raw), dict(resp.headers)
            except ValueError:
                return resp.status, raw, dict(resp.headers)


def post_signed(loop: LoopThread, identity: Identity, target: Node, path: str, payload: Any, *,
                source: str = "127.0.0.1") -> tuple[int, Any]:
    status, body, _ = post_signed_full(loop, identity, target, path, payload, source=source)
    return status, body


def post_signed_full(loop: LoopThread, identity: Identity, target: Node, path: str, payload: Any, *,
                     source: str = "127.0.0.1") -> tuple[int, Any, dict[str, str]]:
    """POST `payload` to `target` as `identity` would sign it, from loopback address `source`."""
    assert target.home is not None
    body = json.dumps(payload).encode()
    headers = sign_request(identity, "POST", target.url + path, body, target.node_id)
    headers["Content-Type"] = "application/json"
    return loop.run(_post(target.url + path, target.home.tls_fingerprint, body, headers, source))


@dataclass
class Stranger:
    """A throw-away identity: what costs an attacker nothing to make by the thousand."""

    identity: Identity = field(default_factory=Identity.generate)
    url: str = "https://127.0.0.1:9"

    def descriptor(self) -> dict[str, Any]:
        from discnode import PROTOCOL_VERSION
        doc = {"type": "descriptor", "v": PROTOCOL_VERSION, "node_id": self.identity.node_id,
               "public_key": self.identity.public_key_b64, "name": f"Stranger {self.identity.node_id[:7]}",
               "url": self.url, "tls_fingerprint": "0" * 64, "issued_at": store.now_ts()}
        return sign_document(doc, self.identity)

    def offer(self, loop: LoopThread, target: Node, source: str = "127.0.0.1", prev: str | None = None
              ) -> tuple[int, Any, dict[str, str]]:
        """Offer to `target` (with prev, offer again after that offer was answered)."""
        doc = sign_document(new_offer(self.identity.node_id, target.node_id, Terms.default(today()),
                                      self.descriptor(), store.now_ts(), prev), self.identity)
        return post_signed_full(loop, self.identity, target, "/v1/consent", doc, source=source)


async def _flood(url: str, fingerprint: str, identity: Identity, destination: str, path: str, n: int,
                 concurrency: int) -> dict[int, int]:
    statuses: dict[int, int] = {}
    queue = list(range(n))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker() -> None:
            while queue:
                queue.pop()
                body = b"{}"
                headers = sign_request(identity, "POST", url + path, body, destination)
                headers["Content-Type"] = "application/json"
                async with session.post(url + path, data=body, headers=headers, allow_redirects=False,
                                        ssl=aiohttp.Fingerprint(bytes.fromhex(fingerprint))) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
        import asyncio
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def flood(loop: LoopThread, identity: Identity, target: Node, n: int, path: str = "/v1/profiles/query",
          concurrency: int = 8) -> dict[int, int]:
    """`n` signed requests from `identity` to `target`, as fast as it takes them; the statuses seen."""
    assert target.home is not None
    return loop.run(_flood(target.url, target.home.tls_fingerprint, identity, target.node_id, path, n, concurrency),
                    timeout=600)


@contextlib.contextmanager
def hostile_partner(root: Path, loop: LoopThread, a: Node, *, remove: bool = False) -> Iterator[HostilePeer]:
    """A hostile peer in an active agreement with `a` (it accepted a's offer), stopped afterwards
    (and, with `remove`, taken off a's peer list first, for a network that other tests go on using)."""
    h = HostilePeer(root, loop)
    try:
        h.routes[("POST", "/v1/consent")] = answer({"state": "pending"})
        a.cli("peer", "add", h.url, "--expect", h.node_id)
        h.accept_from(a)
        yield h
    finally:
        if remove:
            a.cli("peer", "remove", h.node_id, ok=None)
        h.stop()
