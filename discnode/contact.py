"""When this node last reached each partner, and the partner's clock as its replies showed it.
The one module that writes the `peer_contact` table.

Recorded where exchanges happen: each delivery of a signed document (peering.deliver_pending),
each `discnode status` probe, each recovery after a restore. Requests partners make of this node
are in the audit log already (one entry each), so `last_inbound` reads them there instead of
writing a row per request served.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from typing import Any

from . import store


def offset_from_date(date_header: str | None, sent: float, received: float) -> float | None:
    """The peer's clock minus ours, in seconds, from its reply's Date header (RFC 9110: whole
    seconds, so the middle of that second is taken), against the middle of our round trip."""
    if not date_header:
        return None
    try:
        theirs = email.utils.parsedate_to_datetime(date_header)
    except (TypeError, ValueError, IndexError):
        return None
    if theirs.tzinfo is None:
        return None
    return round(theirs.timestamp() + 0.5 - (sent + received) / 2, 1)


def record(db: store.DB, peer: str, *, ok: bool, offset: float | None = None, error: str = "") -> None:
    now = store.now_ts()
    with store.write(db) as conn:
        conn.execute(
            "INSERT INTO peer_contact (peer, last_ok, last_try, last_error, clock_offset, offset_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (peer) DO UPDATE SET "
            "last_ok = coalesce(excluded.last_ok, last_ok), last_try = excluded.last_try, "
            "last_error = excluded.last_error, clock_offset = coalesce(excluded.clock_offset, clock_offset), "
            "offset_at = coalesce(excluded.offset_at, offset_at)",
            [peer, now if ok else None, now, "" if ok else error[:300], offset, now if offset is not None else None])


def held(db: store.DB) -> dict[str, dict[str, Any]]:
    rows = db.execute("SELECT peer, last_ok, last_try, last_error, clock_offset, offset_at FROM peer_contact")
    return {r[0]: {"last_ok": r[1], "last_try": r[2], "last_error": r[3], "clock_offset": r[4], "offset_at": r[5]}
            for r in rows}


def last_inbound(db: store.DB, peer: str) -> str | None:
    """When `peer` last made a request this node answered (its audit entries, newest first)."""
    row = db.execute("SELECT ts FROM audit WHERE peer = ? AND event NOT IN ('refused', 'failed') "
                     "ORDER BY seq DESC LIMIT 1", [peer]).fetchone()
    return row[0] if row else None


def latest(*stamps: str | None) -> str | None:
    given = [s for s in stamps if s]
    return max(given) if given else None


def age_seconds(stamp: str | None, now: dt.datetime | None = None) -> float | None:
    if not stamp:
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    return round((now - dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds(), 1)
