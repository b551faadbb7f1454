"""Private matching, the holder's side: its secret OPRF key per agreement, its own set evaluated
under that key, the daily quota of names, and reveal requests. The one module that writes the
match_keys, match_quota and reveal_requests tables.

What the holder keeps about a partner's questions: how many names it asked about each day (the
quota), and which references it asked to see. Never a name: it never receives one (protocol/
match-v1.md). The key is never logged and never leaves the node.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from dataclasses import dataclass
from typing import Any, Iterable

from . import namekey, oprf, store
from . import query as q
from .handling import Audience
from .errors import Conflict, InvalidInput, NotFound, RateLimited

#: Blinded elements in one evaluate request: one name each.
MAX_BATCH = 1000
REF_BYTES = 10


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: Any, size: int, what: str) -> bytes:
    if not isinstance(text, str) or len(text) != (size * 4 + 2) // 3:
        raise InvalidInput(f"{what} must be {size} bytes in base64url without padding")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        raise InvalidInput(f"{what} is not base64url") from None
    if len(data) != size or b64(data) != text:
        raise InvalidInput(f"{what} is not canonical base64url")
    return data


def ref_of(output: bytes) -> str:
    """A hit's reference: the first 10 bytes of the finalized output, base32 in lower case (16
    characters). It says no more than the output itself, which the asker already holds."""
    return base64.b32encode(output[:REF_BYTES]).decode().lower()


def key_for(db: store.DB, peer: str, offer_hash: str) -> bytes:
    """This node's secret key for the agreement with `peer` (made on first use)."""
    with store.write(db) as conn:
        row = conn.execute("SELECT key FROM match_keys WHERE peer = ? AND offer_hash = ?",
                           [peer, offer_hash]).fetchone()
        if row is not None:
            return bytes(row[0])
        key = oprf.new_key()
        conn.execute("INSERT INTO match_keys (peer, offer_hash, key, created) VALUES (?, ?, ?, ?)",
                     [peer, offer_hash, key, store.now_ts()])
        return key


def own_keys(db: store.DB, me: str, today: dt.date) -> dict[bytes, list[str]]:
    """Every Level Two key of this node's own shareable, identified profiles with a date of birth,
    and the profiles that carry it. Local-only and unreviewed profiles are left out, as for search,
    and so are minors' and C-graded ones (handling.py): a match-only partner's terms share neither."""
    out: dict[bytes, list[str]] = {}
    sql = q.SQL()
    sql.add("batch IS NULL")
    q.shareable(sql, me, today, Audience())
    rows = db.execute(f"SELECT id, record FROM profiles WHERE {' AND '.join(sql.where)} "
                      "AND status = 'identified' AND dob IS NOT NULL AND dob != ''", sql.params).fetchall()
    for profile_id, record in rows:
        for key in namekey.keys(json.loads(record)):
            out.setdefault(key, []).append(profile_id)
    return out


@dataclass
class Evaluated:
    """The holder's own set under one agreement's key, kept in memory and extended as profiles
    are added (18,000 profiles take about 4 s to evaluate once)."""

    key: bytes
    outputs: dict[bytes, bytes]          # Level Two key -> finalized output

    def update(self, keys: Iterable[bytes]) -> None:
        wanted = set(keys)
        for gone in [k for k in self.outputs if k not in wanted]:
            del self.outputs[gone]
        for key in wanted - self.outputs.keys():
            self.outputs[key] = oprf.output(self.key, key)

    def published(self) -> list[str]:
        """The set as sent: each distinct output once, sorted (so its order says nothing)."""
        return sorted({b64(o) for o in self.outputs.values()})

    def profiles_for(self, ref: str, keys: dict[bytes, list[str]]) -> list[str]:
        return sorted({p for k, o in self.outputs.items() if ref_of(o) == ref for p in keys.get(k, [])})


def charge(db: store.DB, peer: str, day: dt.date, names: int, limit: int) -> int:
    """Count `names` against today's quota, or refuse them all (429): returns the names used today."""
    with store.write(db) as conn:
        row = conn.execute("SELECT used FROM match_quota WHERE peer = ? AND day = ?",
                           [peer, day.isoformat()]).fetchone()
        used = row[0] if row else 0
        if used + names > limit:
            raise RateLimited(f"daily match quota reached: the agreement allows {limit} names a day, "
                              f"{used} asked today, this request asks {names}; try again after midnight UTC")
        conn.execute("INSERT INTO match_quota (peer, day, used) VALUES (?, ?, ?) ON CONFLICT (peer, day) "
                     "DO UPDATE SET used = used + excluded.used", [peer, day.isoformat(), names])
        return used + names


def ask_reveal(db: store.DB, peer: str, ref: str, profiles: list[str]) -> dict[str, Any]:
    """Record a partner's request to see the profiles behind `ref` (once; asking again returns
    the same request and its state)."""
    with store.write(db) as conn:
        row = conn.execute("SELECT id FROM reveal_requests WHERE peer = ? AND ref = ?", [peer, ref]).fetchone()
        if row is None:
            request_id = secrets.token_hex(6)
            conn.execute("INSERT INTO reveal_requests (id, peer, ref, profiles, state, asked) "
                         "VALUES (?, ?, ?, ?, 'pending', ?)",
                         [request_id, peer, ref, json.dumps(profiles), store.now_ts()])
        else:
            request_id = row[0]
    return get_reveal(db, request_id)


def get_reveal(db: store.DB, request_id: str) -> dict[str, Any]:
    cur = db.execute("SELECT id, peer, ref, profiles, state, asked, decided FROM reveal_requests WHERE id = ?",
                     [request_id])
    row = cur.fetchone()
    if row is None:
        raise NotFound(f"no reveal request {request_id!r}; `discnode reveal list` shows them")
    out = dict(zip([d[0] for d in cur.description], row))
    out["profiles"] = json.loads(out["profiles"])
    return out


def reveals(db: store.DB) -> list[dict[str, Any]]:
    ids = [r[0] for r in db.execute("SELECT id FROM reveal_requests ORDER BY asked, id").fetchall()]
    return [get_reveal(db, i) for i in ids]


def decide(db: store.DB, request_id: str, allow: bool) -> dict[str, Any]:
    with store.write(db) as conn:
        request = get_reveal(db, request_id)
        if request["state"] != "pending":
            raise Conflict(f"reveal request {request_id} was already {request['state']}")
        conn.execute("UPDATE reveal_requests SET state = ?, decided = ? WHERE id = ?",
                     ["allowed" if allow else "declined", store.now_ts(), request_id])
    return get_reveal(db, request_id)
