"""The Dataview: one merged, filtered, sorted, paginated view of this node's profiles and every
consenting peer's.

The same query goes to every peer with an active agreement, in parallel, each under its own
deadline; filtering, sorting and the page limit run at the source (SQL + FTS5). Replies are
verified (origin is the peer that sent them, signature by its pinned key, schema), merged in the
global order (k-way merge), and cut to one page. The cursor is the key of the page's last row; since
the order is total and global, that one key is every source's position. A peer that fails is
reported (ok / timeout / unreachable / refused / invalid) and never holds the view.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from . import peers, schemas, store
from .client import PeerClient
from .errors import DiscnodeError, InvalidInput, PeerError, Refused, Unauthenticated
from .home import Home, today
from .identity import parse_node_id
from .query import Query, apply_cursor, encode_cursor, sort_key
from .signing import verify_document

DEFAULT_TIMEOUT = 3.0


@dataclass
class SourceStatus:
    node_id: str
    name: str
    status: str          # ok | timeout | unreachable | refused | invalid
    count: int = 0
    ms: int = 0
    dropped: int = 0
    error: str = ""


@dataclass
class Page:
    results: list[dict[str, Any]]
    peers: list[SourceStatus]
    next_cursor: str | None
    query: Query = field(default_factory=Query)

    def to_json(self) -> dict[str, Any]:
        return {"results": self.results, "peers": [asdict(p) for p in self.peers], "next_cursor": self.next_cursor}


# --- pure parts ------------------------------------------------------------------------------


def verify_records(records: Any, peer: peers.Peer) -> tuple[list[dict[str, Any]], int, str]:
    """Keep the records that are the peer's own and signed by it; count and describe the rest."""
    if not isinstance(records, list):
        return [], 0, "reply has no record list"
    good, dropped, reason = [], 0, ""
    for record in records:
        try:
            if not isinstance(record, dict):
                raise InvalidInput("not an object")
            if record.get("origin") != peer.node_id:
                raise Unauthenticated(f"record of another origin ({str(record.get('origin'))[:40]})")
            schemas.validate("profile", record)
            verify_document(record, peer.public_key)
            if record["local_only"]:
                raise InvalidInput("local-only record served")
        except DiscnodeError as exc:
            dropped += 1
            reason = reason or str(exc)
            continue
        good.append(record)
    return good, dropped, reason


def merge(pages: Sequence[Sequence[dict[str, Any]]], query: Query) -> tuple[list[dict[str, Any]], bool]:
    """k-way merge of per-source pages (each already in order) into one page; and whether any
    source may hold more after it."""
    merged = list(heapq.merge(*pages, key=lambda r: sort_key(r, query.sort), reverse=query.desc))
    more = len(merged) > query.limit or any(len(p) >= query.limit for p in pages)
    return merged[: query.limit], more


def next_cursor(results: list[dict[str, Any]], more: bool, query: Query) -> str | None:
    if not more or not results:
        return None
    return encode_cursor(query, sort_key(results[-1], query.sort))


def _is_after(record: dict[str, Any], query: Query) -> bool:
    if query.after is None:
        return True
    key = sort_key(record, query.sort)
    return key < query.after if query.desc else key > query.after


# --- I/O -------------------------------------------------------------------------------------


async def _ask(client: PeerClient, peer: peers.Peer, query: Query, timeout: float
               ) -> tuple[list[dict[str, Any]], SourceStatus]:
    started = time.monotonic()
    status = SourceStatus(peer.node_id, peer.name, "ok")
    try:
        reply = await asyncio.wait_for(
            client.request(peer, "POST", "/v1/profiles/query", query.to_wire(), timeout=timeout), timeout)
        if reply.status in (401, 403):
            status.status, status.error = "refused", f"HTTP {reply.status}"
            return [], status
        if reply.status != 200:
            status.status, status.error = "invalid", f"HTTP {reply.status}"
            return [], status
        body = reply.json()
        records, dropped, reason = verify_records(body.get("records") if isinstance(body, dict) else None, peer)
        # A well-behaved peer returns at most `limit`, in order, after the cursor; enforce all three.
        records = [r for r in records if _is_after(r, query)][: query.limit]
        in_order = sorted(records, key=lambda r: sort_key(r, query.sort), reverse=query.desc)
        if in_order != records:
            dropped, reason, records = dropped + len(records), "records out of order", []
        status.count, status.dropped = len(records), dropped
        if dropped:
            status.status, status.error = "invalid", f"dropped {dropped}: {reason}"
        return records, status
    except asyncio.TimeoutError:
        status.status, status.error = "timeout", f"no reply within {timeout:g}s"
    except (PeerError, Unauthenticated) as exc:
        status.status, status.error = ("timeout", str(exc)) if "Timeout" in str(exc) else ("unreachable", str(exc))
    finally:
        status.ms = int((time.monotonic() - started) * 1000)
    return [], status


def active_peers(home: Home) -> list[peers.Peer]:
    day = today()
    return [p for p in peers.all_peers(home.db) if peers.agreement(home.db, home.node_id, p.node_id, day).active]


async def search(home: Home, query: Query, *, cursor: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 partnerships: Iterable[str] = (), client: PeerClient | None = None) -> Page:
    query = apply_cursor(query.checked(), cursor)
    wanted = {parse_node_id(p) for p in partnerships}
    started = time.monotonic()
    own = [] if wanted and home.node_id not in wanted else [
        r for r in store.search(home.db, query, today()) if r["origin"] == home.node_id]
    own_status = SourceStatus(home.node_id, home.config.name, "ok", len(own),
                              int((time.monotonic() - started) * 1000))
    targets = [p for p in active_peers(home) if not wanted or p.node_id in wanted]
    unknown = wanted - {p.node_id for p in targets} - {home.node_id}
    if unknown:
        raise InvalidInput(f"no active agreement with {', '.join(sorted(unknown))}")
    owned_client = client is None
    client = client or PeerClient(home.identity, timeout=timeout)
    try:
        answers = await asyncio.gather(*(_ask(client, p, query, timeout) for p in targets))
    finally:
        if owned_client:
            await client.close()
    names = {home.node_id: home.config.name, **{p.node_id: p.name for p in targets}}
    pages = [own] + [records for records, _ in answers]
    results, more = merge(pages, query)
    return Page([{**r, "origin_name": names[r["origin"]]} for r in results],
                [own_status] + [s for _, s in answers], next_cursor(results, more, query), query)


async def fetch_profile(home: Home, ref: str, save_images: Path | None = None) -> dict[str, Any]:
    node_part, _, profile_id = ref.partition(":")
    node_id = parse_node_id(node_part)
    if not profile_id:
        raise InvalidInput("give NODE_ID:PROFILE_ID")
    peer = peers.get(home.db, node_id)
    if not peers.agreement(home.db, home.node_id, node_id, today()).active:
        raise Refused(f"no active agreement with {peer.name}")
    async with PeerClient(home.identity) as client:
        body = await client.call_json(peer, "GET", f"/v1/profiles/{profile_id}")
        if not isinstance(body, dict):
            raise PeerError(f"{peer.name} sent a reply that is not a profile")
        good, dropped, reason = verify_records([body.get("record")], peer)
        if not good:
            raise PeerError(f"{peer.name} sent a profile that failed verification: {reason}")
        images = [h for h in body.get("images", []) if isinstance(h, str) and len(h) == 64]
        if save_images:
            save_images.mkdir(parents=True, exist_ok=True)
            for sha in images:
                reply = await client.request(peer, "GET", f"/v1/images/{sha}?size=full")
                if reply.status == 200:
                    (save_images / f"{sha}.jpg").write_bytes(reply.body)
    return {**good[0], "origin_name": peer.name, "images": images}


def show_remote(home: Home, ref: str, save_images: Path | None) -> dict[str, Any]:
    return asyncio.run(fetch_profile(home, ref, save_images))


async def thumbnails(home: Home, results: list[dict[str, Any]], timeout: float = DEFAULT_TIMEOUT
                     ) -> dict[str, bytes]:
    """Thumbnail bytes of each result's primary image: own from disk, peers' over the wire, in parallel."""
    from .images import read
    out: dict[str, bytes] = {}
    by_peer = {p.node_id: p for p in peers.all_peers(home.db)}
    async with PeerClient(home.identity, timeout=timeout) as client:
        async def one(record: dict[str, Any]) -> None:
            sha = record.get("image")
            if not sha:
                return
            try:
                if record["origin"] == home.node_id:
                    out[sha] = read(home.images_root, sha, thumb=True)
                elif record["origin"] in by_peer:
                    reply = await client.request(by_peer[record["origin"]], "GET", f"/v1/images/{sha}?size=thumb",
                                                 timeout=timeout)
                    if reply.status == 200:
                        out[sha] = reply.body
            except (OSError, DiscnodeError):
                pass
        await asyncio.gather(*(one(r) for r in results))
    return out
