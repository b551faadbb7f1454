"""The append-only, hash-chained access log: every peer request served or refused, every consent
change, every local export. The one module that writes the `audit` table.

Entry n's hash is SHA-256 over the previous hash and the RFC 8785 form of the entry, so changing,
removing or reordering any past entry breaks every hash after it. SQLite triggers refuse UPDATE and
DELETE as a second line; `verify` is what proves it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Iterator, Sequence


from . import store
from .signing import canonical

GENESIS = "0" * 64


def _entry_hash(prev: str, seq: int, ts: str, event: str, peer: str, detail: str) -> str:
    body = canonical({"seq": seq, "ts": ts, "event": event, "peer": peer, "detail": json.loads(detail)})
    return hashlib.sha256(bytes.fromhex(prev) + body).hexdigest()


def append(db: store.DB, event: str, peer: str = "", **detail: Any) -> int:
    return append_many(db, [(event, peer, detail)])[-1]


def append_many(db: store.DB, entries: list[tuple[str, str, dict[str, Any]]]) -> list[int]:
    """Append entries in one transaction (the server's group commit); returns their numbers."""
    seqs = []
    with store.write(db) as conn:
        row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev = (row[0], row[1]) if row else (0, GENESIS)
        ts = store.now_ts()
        for event, peer, detail in entries:
            seq += 1
            detail_text = json.dumps(detail, sort_keys=True, separators=(",", ":"), default=str)
            digest = _entry_hash(prev, seq, ts, event, peer, detail_text)
            conn.execute("INSERT INTO audit (seq, ts, event, peer, detail, prev, hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [seq, ts, event, peer, detail_text, prev, digest])
            prev = digest
            seqs.append(seq)
    return seqs


def entries(db: store.DB, limit: int | None = None, peer: str | None = None,
            also: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The latest entries, oldest first; with peer, only those about it (and about the node IDs in
    `also`: the ones it replaced, spec 4.7)."""
    sql = "SELECT seq, ts, event, peer, detail, hash FROM audit"
    params: list[Any] = []
    if peer:
        wanted = [peer, *also]
        sql += f" WHERE peer IN ({', '.join('?' * len(wanted))})"
        params += wanted
    sql += " ORDER BY seq DESC"
    if limit:
        sql += " LIMIT ?"
        params.append(limit)
    rows = db.execute(sql, params).fetchall()
    return [{"seq": r[0], "ts": r[1], "event": r[2], "peer": r[3], "detail": json.loads(r[4]), "hash": r[5]}
            for r in reversed(rows)]


def head(db: store.DB) -> tuple[int, str]:
    """The number of the last entry and its hash: what a signed head states."""
    row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else (0, GENESIS)


def hash_at(db: store.DB, seq: int) -> str | None:
    row = db.execute("SELECT hash FROM audit WHERE seq = ?", [seq]).fetchone()
    return row[0] if row else None


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    first_bad: int | None = None
    reason: str = ""


def _rows(db: store.DB) -> Iterator[tuple[Any, ...]]:
    yield from db.execute("SELECT seq, ts, event, peer, detail, prev, hash FROM audit ORDER BY seq")


def verify(db: store.DB) -> Verdict:
    prev, n = GENESIS, 0
    for seq, ts, event, peer, detail, stored_prev, stored_hash in _rows(db):
        n += 1
        if seq != n:
            return Verdict(False, n, seq, f"entry {n} is missing (found {seq})")
        if stored_prev != prev:
            return Verdict(False, n, seq, f"entry {seq} does not follow entry {seq - 1}")
        try:
            digest = _entry_hash(prev, seq, ts, event, peer, detail)
        except (ValueError, TypeError):
            return Verdict(False, n, seq, f"entry {seq} is not readable")
        if digest != stored_hash:
            return Verdict(False, n, seq, f"entry {seq} was changed after it was written")
        prev = stored_hash
    return Verdict(True, n)


def restores(db: store.DB) -> list[dict[str, Any]]:
    """The `restored` entries (backup.restore): where the log was cut back to a backup's head."""
    out = []
    for seq, ts, detail in db.execute("SELECT seq, ts, detail FROM audit WHERE event = 'restored' ORDER BY seq"):
        d = json.loads(detail)
        if isinstance(d.get("backup_entries"), int) and isinstance(d.get("backup_head"), str):
            out.append({"seq": seq, "ts": ts, "entries": d["backup_entries"], "head": d["backup_head"],
                        "backup_created": d.get("backup_created")})
    return out
