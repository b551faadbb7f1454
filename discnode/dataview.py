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
import contextlib
import heapq
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

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


def check_origin(record: Any, peer: peers.Peer) -> None:
    """The cheap checks, on every record received: an object of the sending peer's own origin."""
    if not isinstance(record, dict):
        raise InvalidInput("record is not an object")
    if record.get("origin") != peer.node_id:
        raise Unauthenticated(f"record of another origin ({str(record.get('origin'))[:40]})")
    if not isinstance(record.get("id"), str):
        raise InvalidInput("record has no id")


def check_record(record: dict[str, Any], peer: peers.Peer) -> None:
    """The full checks: schema, the origin's signature by its pinned key, never local-only."""
    check_origin(record, peer)
    schemas.validate("profile", record)
    verify_document(record, peer.public_key)
    if record["local_only"]:
        raise InvalidInput("local-only record served")


def verify_records(records: Any, peer: peers.Peer) -> tuple[list[dict[str, Any]], int, str]:
    """Keep the records that pass every check; count and describe the rest."""
    if not isinstance(records, list):
        return [], 0, "reply has no record list"
    good, dropped, reason = [], 0, ""
    for record in records:
        try:
            check_record(record, peer)
        except DiscnodeError as exc:
            dropped += 1
            reason = reason or str(exc)
            continue
        good.append(record)
    return good, dropped, reason


Accept = Callable[[dict[str, Any]], bool]


def merge(pages: Sequence[Sequence[dict[str, Any]]], query: Query, accept: Accept | None = None
          ) -> tuple[list[dict[str, Any]], bool]:
    """k-way merge of per-source pages (each already in order) into one page, and whether any
    source may hold more after it. With `accept`, each record is checked as the merge reaches it
    and skipped if refused: only the records that can make the page are ever checked, so a page
    across 30 peers verifies ~limit signatures, not 30 x limit."""
    out: list[dict[str, Any]] = []
    more = any(len(p) >= query.limit for p in pages)
    for record in heapq.merge(*pages, key=lambda r: sort_key(r, query.sort), reverse=query.desc):
        if accept is not None and not accept(record):
            continue
        if len(out) == query.limit:
            return out, True
        out.append(record)
    return out, more


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
        received = body.get("records") if isinstance(body, dict) else None
        if not isinstance(received, list):
            status.status, status.error = "invalid", "reply has no record list"
            return [], status
        records, dropped, reason = [], 0, ""
        for record in received[: query.limit]:
            try:
                check_origin(record, peer)
                key = sort_key(record, query.sort)
                if not isinstance(key[0], int if query.sort == "incidents" else str) or isinstance(key[0], bool):
                    raise InvalidInput("record has a malformed sort value")
            except (DiscnodeError, KeyError, TypeError) as exc:
                dropped, reason = dropped + 1, reason or str(exc) or "malformed record"
                continue
            records.append(record)
        # A well-behaved peer returns at most `limit` records, in order, after the cursor. Keep only
        # those after the cursor, and order them by their own keys: the merge needs sorted input,
        # and a peer's order is not something to trust.
        records = [r for r in records if _is_after(r, query)]
        records.sort(key=lambda r: sort_key(r, query.sort), reverse=query.desc)
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
    by_id = {p.node_id: p for p in targets}
    statuses = {s.node_id: s for _, s in answers}

    def accept(record: dict[str, Any]) -> bool:
        if record["origin"] == home.node_id:
            return True  # our own database
        try:
            check_record(record, by_id[record["origin"]])
            return True
        except DiscnodeError as exc:
            status = statuses[record["origin"]]
            status.count -= 1
            status.dropped += 1
            status.status, status.error = "invalid", f"dropped {status.dropped}: {exc}"
            return False

    pages = [own] + [records for records, _ in answers]
    results, more = merge(pages, query, accept)
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


async def thumbnails(home: Home, results: list[dict[str, Any]], timeout: float = DEFAULT_TIMEOUT,
                     client: PeerClient | None = None) -> dict[str, bytes]:
    """Thumbnail bytes of each result's primary image: own from disk, peers' over the wire, in parallel."""
    from .images import read
    out: dict[str, bytes] = {}
    by_peer = {p.node_id: p for p in peers.all_peers(home.db)}
    async with contextlib.nullcontext(client) if client else PeerClient(home.identity, timeout=timeout) as client:
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
