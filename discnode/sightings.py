"""Sightings: a partner reports that the person in one of our shared profiles was seen (spec 8.5).

The one module that writes the `sightings` table. The reporter (B) signs a sighting about a profile
the origin (A) shares with it; A checks it shares that profile with B now, keeps the sighting for
its own administrator (listed on the profile, with who reported it), and moves the profile's
last-seen date forward. A never serves a sighting: the last-seen date becomes A's own fact, and
the place and the reporter stay with A. Delivered by peering.deliver_pending, only while the
agreement is active.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from . import audit, peers, profiles, store
from .documents.sighting import check_sighting, new_sighting
from .errors import Conflict, InvalidInput, NotFound
from .home import Home, today
from .identity import Identity
from .refs import parse_ref, require_active
from .signing import document_hash

MAX_PLACE = 200
#: Sightings received this recently are in the inbox.
INBOX_DAYS = 14
#: Sightings taken from one partner in 24 hours, at most (refused with 409 beyond it): enough for
#: every member shop reporting, not enough to fill the disk.
MAX_PER_DAY = 1000


def _rows(db: store.DB, where: str, params: list[Any]) -> list[dict[str, Any]]:
    cur = db.execute(f"SELECT * FROM sightings WHERE {where} ORDER BY seen DESC, created DESC, rowid DESC", params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _view(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "from": row["sender"], "to": row["recipient"], "about": row["about"],
            "at": row["at"], "when": row["seen"], "created": row["created"], "delivered": bool(row["delivered"]),
            "refusal": row["refusal"]}


def prepare(home: Home, target: str, at: str, when: str | None) -> str:
    """Sign and keep a sighting of a partner's profile; returns its hash (delivered by peering)."""
    origin, about = parse_ref(target)
    if origin == home.node_id:
        raise InvalidInput("that is one of this node's own profiles: use profile edit --last-seen")
    peers.get(home.db, origin)
    require_active(home, origin, "sightings")
    at = at.strip()
    if not at or len(at) > MAX_PLACE or any(not ch.isprintable() for ch in at):
        raise InvalidInput(f"--at must be 1 to {MAX_PLACE} printable characters on one line")
    day = today()
    if when:
        try:
            seen = dt.date.fromisoformat(when)
        except ValueError:
            raise InvalidInput(f"--when {when[:40]!r} is not a date YYYY-MM-DD") from None
        if len(when) != 10 or seen > day:
            raise InvalidInput("--when must be a date YYYY-MM-DD, not in the future")
        if seen < day - dt.timedelta(days=366):
            raise InvalidInput("--when may be at most a year ago")
    doc = new_sighting(home.identity, origin, about, at, when or day.isoformat(), store.now_ts())
    digest = document_hash(doc)
    with store.write(home.db) as conn:
        conn.execute("INSERT INTO sightings (hash, id, sender, recipient, about, at, seen, doc, delivered, created) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?)",
                     [digest, doc["id"], home.node_id, origin, about, at, doc["when"], json.dumps(doc), store.now_ts()])
        audit.append(home.db, "sighting-sent", origin, id=doc["id"], about=about, when=doc["when"])
    return digest


def by_hash(db: store.DB, digest: str) -> dict[str, Any]:
    rows = _rows(db, "hash = ?", [digest])
    if not rows:
        raise NotFound("no such sighting")
    return _view(rows[0])


def receive(db: store.DB, identity: Identity, peer: str, public_key: bytes, body: Any) -> dict[str, Any]:
    """A partner's signed sighting of one of our profiles it may see now (the caller checked the
    agreement). Kept, and the profile's last-seen moved forward, in one transaction."""
    me = identity.node_id
    doc = check_sighting(body, peer, me, public_key)
    try:
        store.get_shareable(db, doc["about"], me, today(), peers.audience(db, me, peer, today()))
    except NotFound:
        raise NotFound(f"no shared profile {doc['about']}") from None
    digest = document_hash(doc)
    held = _rows(db, "sender = ? AND id = ?", [peer, doc["id"]])
    if held:
        if held[0]["hash"] != digest:
            raise Conflict("another sighting with that id was received")
        return {"id": doc["id"]}  # a re-delivery
    since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    taken = db.execute("SELECT count(*) FROM sightings WHERE sender = ? AND created >= ?",
                            [peer, since]).fetchone()[0]
    if taken >= MAX_PER_DAY:
        raise Conflict(f"{taken} sightings from you in the last 24 hours; try again later")
    with store.write(db) as conn:
        conn.execute("INSERT INTO sightings (hash, id, sender, recipient, about, at, seen, doc, delivered, created) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
                     [digest, doc["id"], peer, me, doc["about"], doc["at"], doc["when"], json.dumps(doc),
                      store.now_ts()])
        profiles.seen(db, identity, doc["about"], doc["when"], peer, doc["id"])
    return {"id": doc["id"]}


def of_profile(db: store.DB, me: str, profile_id: str) -> list[dict[str, Any]]:
    """Sightings partners reported of one of our profiles, latest first: for our administrator only."""
    return [_view(r) for r in _rows(db, "recipient = ? AND about = ?", [me, profile_id])]


def recent(db: store.DB, me: str, days: int = INBOX_DAYS) -> list[dict[str, Any]]:
    since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [_view(r) for r in _rows(db, "recipient = ? AND created >= ?", [me, since])]


def undelivered(db: store.DB, me: str) -> list[tuple[str, str, dict[str, Any]]]:
    rows = _rows(db, "sender = ? AND delivered = 0", [me])
    return [(r["hash"], r["recipient"], json.loads(r["doc"])) for r in rows
            if peers.agreement(db, me, r["recipient"], today()).active]


def mark_delivered(db: store.DB, digest: str, refusal: str | None) -> None:
    with store.write(db) as conn:
        conn.execute("UPDATE sightings SET delivered = 1, refusal = ? WHERE hash = ?",
                     [refusal[:500] if refusal else None, digest])


def forget_sent(db: store.DB, me: str, origin: str, about: str) -> int:
    """Drop the sightings this node reported of the origin's profile `about` (delivered or not):
    the origin erased it (notices.py). Returns how many were dropped."""
    with store.write(db) as conn:
        return conn.execute("DELETE FROM sightings WHERE sender = ? AND recipient = ? AND about = ?",
                            [me, origin, about]).rowcount
