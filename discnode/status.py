"""`discnode status`: is this node healthy, and what needs its administrator.

Read from the node's home (and the running daemon's socket), plus one unsigned probe of each
partner's descriptor over its pinned certificate: reachability, and its clock from the reply's
Date header. Signatures carry `created` and `expires` and are refused more than 30 s out
(spec section 6), so a partner whose clock is off by more than that cannot exchange with this
node, however reachable it is.

`attention` lists what needs the administrator; `discnode status` exits with ATTENTION_EXIT when
it is not empty, so that a monitoring check (cron, systemd timer, Nagios) needs no parsing.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import time
from pathlib import Path
from typing import Any

from . import audit, contact, peers, peering, review, store, witness
from .home import DESCRIPTOR_PATH, Home, today
from .signing import CLOCK_SKEW

#: `discnode status`'s exit code when something needs attention (0 when nothing does).
ATTENTION_EXIT = 10
#: A checkpoint this much older than the schedule (witness.CHECKPOINT_EVERY), with the log moved
#: since, means the daemon has not been signing them.
CHECKPOINT_LATE = 3 * witness.CHECKPOINT_EVERY
#: Free space below which the disk needs attention.
MIN_FREE = 1024 ** 3


def _size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(root) / name).lstat().st_size
            except OSError:
                continue
    return total


def disk(home: Home) -> dict[str, int]:
    db = sum((home.path / n).stat().st_size for n in ("discnode.db", "discnode.db-wal", "discnode.db-shm")
             if (home.path / n).exists())
    free = shutil.disk_usage(home.path).free
    return {"home": _size(home.path), "db": db, "images": _size(home.images_root), "free": free}


async def probe(url: str, fingerprint: str, timeout: float) -> dict[str, Any]:
    """Reachability and clock of one partner: GET its descriptor over the pinned certificate."""
    import aiohttp

    from .untrusted import peer_url
    sent = time.time()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(peer_url(url) + DESCRIPTOR_PATH, allow_redirects=False,
                                   ssl=aiohttp.Fingerprint(bytes.fromhex(fingerprint)),
                                   timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                await resp.content.read(64 * 1024)
                received = time.time()
                if resp.status != 200:
                    return {"reachable": False, "error": f"HTTP {resp.status}"}
                return {"reachable": True, "error": "", "rtt_ms": round((received - sent) * 1000, 1),
                        "clock_offset": contact.offset_from_date(resp.headers.get("Date"), sent, received)}
    except aiohttp.ServerFingerprintMismatch:
        return {"reachable": False, "error": "presented a TLS certificate that is not the pinned one"}
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
        reason = f"no answer in {timeout:g} s" if isinstance(exc, asyncio.TimeoutError) else (
            getattr(exc, "strerror", None) or type(exc).__name__)
        return {"reachable": False, "error": str(reason)}


def _daemon(home_path: Path) -> dict[str, Any]:
    from .fastpath import request
    try:
        reply = request(home_path, "ping", timeout=3.0)
    except (OSError, ValueError):
        reply = None
    if reply is None:
        return {"running": False}
    return {"running": True, "pid": reply.get("pid"), "since": reply.get("since")}


async def gather(home: Home, me: str, *, timeout: float = 3.0, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or dt.datetime.now(dt.timezone.utc)
    db = home.db
    attention: list[str] = []
    daemon = _daemon(home.path)
    if not daemon["running"]:
        attention.append("the daemon is not running (start it: discnode serve, or systemctl start discnode)")

    listing = peers.listing(db, me, today())
    pinned = {p.node_id: p for p in peers.all_peers(db)}
    partners = [row for row in listing if row["state"] == "active" and row["node_id"] in pinned]
    probes = await asyncio.gather(*(probe(pinned[r["node_id"]].url, pinned[r["node_id"]].tls_fingerprint, timeout)
                                    for r in partners))
    held = contact.held(db)
    rows = []
    for row in listing:
        if row["node_id"] not in pinned:
            continue
        node_id = row["node_id"]
        result: dict[str, Any] = {"reachable": None, "error": "", "clock_offset": None}
        if row in partners:
            result = probes[partners.index(row)]
            contact.record(db, node_id, ok=result["reachable"], offset=result.get("clock_offset"),
                           error=result["error"])
        was = held.get(node_id, {})
        inbound = contact.last_inbound(db, node_id)
        outbound = now_ts() if result.get("reachable") else was.get("last_ok")
        offset = result.get("clock_offset")
        clock_ok = None if offset is None else abs(offset) <= CLOCK_SKEW
        rows.append({"node_id": node_id, "name": row["name"], "url": row["url"], "state": row["state"],
                     "reachable": result["reachable"], "error": result["error"], "rtt_ms": result.get("rtt_ms"),
                     "last_exchange": contact.latest(inbound, outbound), "last_inbound": inbound,
                     "last_outbound": outbound, "clock_offset": offset, "clock_ok": clock_ok,
                     "undelivered": 0})
        if result["reachable"] is False:
            attention.append(f"partner {row['name']} ({node_id}) is unreachable: {result['error']}")
        if clock_ok is False:
            attention.append(f"partner {row['name']} ({node_id}) has a clock {offset:+.0f} s from this node's "
                             f"(signatures need {CLOCK_SKEW} s or less: check NTP on both machines)")

    waiting = peering.outbox(home)
    by_peer: dict[str, int] = {}
    for _, to, _ in waiting:
        by_peer[to] = by_peer.get(to, 0) + 1
    for r in rows:
        r["undelivered"] = by_peer.get(r["node_id"], 0)

    items = review.queue(db, me, today())
    kinds: dict[str, int] = {}
    for item in items:
        kinds[item.kind.value] = kinds.get(item.kind.value, 0) + 1
    overdue = sum(1 for i in items if i.overdue)
    if overdue:
        attention.append(f"{overdue} review item(s) overdue (discnode review)")

    entries, _ = audit.head(db)
    checkpoints = witness.own_checkpoints(db, me)
    cp = checkpoints[-1] if checkpoints else None
    age = contact.age_seconds(cp["issued_at"], now) if cp else None
    if entries and (cp is None or (cp["entries"] < entries and (age or 0) > CHECKPOINT_LATE)):
        attention.append("the audit log has no recent signed checkpoint (the daemon signs one hourly; "
                         "or: discnode audit --checkpoint)")

    space = disk(home)
    if space["free"] < MIN_FREE:
        attention.append(f"only {space['free'] // 1024 ** 2} MB free on the node's disk")

    return {
        "node": {"node_id": me, "name": home.config.name, "home": str(home.path)},
        "daemon": daemon,
        "partners": rows,
        "outbox": {"count": len(waiting), "by_partner": by_peer},
        "review": {"count": len(items), "overdue": overdue, "by_kind": kinds},
        "audit": {"entries": entries, "checkpoint_entries": cp["entries"] if cp else None,
                  "checkpoint_at": cp["issued_at"] if cp else None, "checkpoint_age_seconds": age},
        "disk": space,
        "attention": attention,
        "ok": not attention,
    }


def now_ts() -> str:
    return store.now_ts()
