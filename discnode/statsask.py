"""Statistics-only partners, the asker's side: ask each for its signed statistics reply, in
parallel, each under its own deadline, and keep only replies that verify (schema, signer, this
node as addressee, signature by the partner's pinned key, one consistent release). A partner that
fails is reported (timeout / unreachable / refused / invalid), never guessed."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from . import peers
from .client import PeerClient
from .documents.statistics import check_statistics
from .errors import DiscnodeError, InvalidInput, PeerError, PeerTimeout
from .home import Home, today
from .statistics import Tables

PATH = "/v1/statistics"
DEFAULT_TIMEOUT = 3.0


@dataclass
class PartnerStatistics:
    node_id: str
    name: str
    status: str                 # ok | timeout | unreachable | refused | invalid | unsupported
    tables: Tables | None = None
    window: dict[str, Any] = field(default_factory=dict)
    ms: int = 0
    error: str = ""


def statistics_partners(home: Home) -> list[peers.Peer]:
    """Partners whose active agreement shares statistics but not profiles (those whose profiles
    this node can see are counted from their records instead)."""
    day = today()
    out = []
    for peer in peers.all_peers(home.db):
        share = peers.agreement(home.db, home.node_id, peer.node_id, day).share
        if "statistics" in share and "profiles" not in share:
            out.append(peer)
    return out


async def ask_one(home: Home, client: PeerClient, peer: peers.Peer, timeout: float) -> PartnerStatistics:
    started = time.monotonic()
    out = PartnerStatistics(peer.node_id, peer.name, "ok")
    try:
        reply = await asyncio.wait_for(client.request(peer, "POST", PATH, {}, timeout=timeout), timeout)
        if reply.status == 404:
            out.status, out.error = "unsupported", "the partner's node does not serve statistics"
        elif reply.status in (401, 403):
            out.status, out.error = "refused", f"HTTP {reply.status}"
        elif reply.status != 200:
            out.status, out.error = "invalid", f"HTTP {reply.status}"
        else:
            try:
                doc = reply.json()
            except PeerError as exc:
                raise InvalidInput(str(exc)) from None
            out.tables = check_statistics(doc, peer.node_id, home.node_id, peer.public_key)
            out.window = dict(doc["window"])
    except (asyncio.TimeoutError, PeerTimeout):
        out.status, out.error = "timeout", f"no reply within {timeout:g}s"
    except DiscnodeError as exc:
        out.status = "invalid" if exc.code in ("invalid", "unauthenticated") else "unreachable"
        out.error = str(exc)
        out.tables = None
    out.ms = int((time.monotonic() - started) * 1000)
    return out


async def ask(home: Home, targets: Iterable[peers.Peer] | None = None, *, timeout: float = DEFAULT_TIMEOUT,
              client: PeerClient | None = None, on_done: Callable[[PartnerStatistics], None] | None = None
              ) -> list[PartnerStatistics]:
    """Every target's statistics (default: every statistics-only partner), in parallel."""
    targets = statistics_partners(home) if targets is None else list(targets)
    owned = client is None
    client = client or PeerClient(home.identity, timeout=timeout)

    async def one(peer: peers.Peer) -> PartnerStatistics:
        got = await ask_one(home, client, peer, timeout)
        if on_done is not None:
            on_done(got)
        return got
    try:
        return list(await asyncio.gather(*(one(p) for p in targets)))
    finally:
        if owned:
            await client.close()
