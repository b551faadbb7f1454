"""The append-only, hash-chained access log: every peer request served or refused, every consent
change, every local export. The one module that writes the `audit` table.

Entry n's hash is SHA-256 over the previous hash and the RFC 8785 form of the entry, so changing,
removing or reordering any past entry breaks every hash after it. SQLite triggers refuse UPDATE and
DELETE as a second line (DELETE only of entries an archive holds: auditarchive.py); `verify` is
what proves it.

Who acted: an entry of a local action names the administrator who took it (`actor`): "os:NAME"
for the operating-system user running the command line (or, for a command forwarded to the
daemon, the user its Unix socket's peer credentials name), "web:NAME" for a Dataview account.
It comes from the context (`acting`), set once where a command or web request starts, so that no
caller can forget it or claim another. Peer requests and the daemon's own tasks leave it empty.
The hash covers `actor` only when it is set, so entries written before it existed verify as before.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence


from . import store
from .signing import _plain, canonical

GENESIS = "0" * 64
MAX_ACTOR = 100

#: Who is acting in this context (see the module's docstring); "" for peers and the daemon itself.
ACTOR: contextvars.ContextVar[str] = contextvars.ContextVar("discnode_audit_actor", default="")


@contextlib.contextmanager
def acting(actor: str) -> Iterator[None]:
    """Entries appended inside this block name `actor`."""
    token = ACTOR.set(actor[:MAX_ACTOR])
    try:
        yield
    finally:
        ACTOR.reset(token)


def os_user(uid: int | None = None) -> str:
    """The operating-system account of `uid` (default: this process's real user), as an actor.
    From the password database, never from $USER, which the caller sets."""
    import pwd

    uid = os.getuid() if uid is None else uid
    try:
        return f"os:{pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"os:uid {uid}"


def _entry_hash(prev: str, seq: int, ts: str, event: str, peer: str, detail: str, actor: str = "",
                parsed: Any = None) -> str:
    """The entry's hash over its fields, the detail as its stored text reads back (json.loads).
    parsed: that value already, when the caller holds it (append_many: a plain detail, which
    reads back as itself), to spare parsing the text just written (~1.5 kB for a served page)."""
    fields = {"seq": seq, "ts": ts, "event": event, "peer": peer,
              "detail": json.loads(detail) if parsed is None else parsed}
    if actor:
        fields["actor"] = actor
    return hashlib.sha256(bytes.fromhex(prev) + canonical(fields)).hexdigest()


def append(db: store.DB, event: str, peer: str = "", **detail: Any) -> int:
    return append_many(db, [(event, peer, detail)])[-1]


def append_many(db: store.DB, entries: list[tuple[str, str, dict[str, Any]]]) -> list[int]:
    """Append entries in one transaction (the server's group commit); returns their numbers."""
    seqs = []
    with store.write(db) as conn:
        seq, prev = head(db)
        ts = store.now_ts()
        actor = ACTOR.get()
        for event, peer, detail in entries:
            seq += 1
            detail_text = json.dumps(detail, sort_keys=True, separators=(",", ":"), default=str)
            # A plain detail (dicts with ASCII keys, lists, str, int within 2**53, bool, None:
            # signing._plain) is what its text reads back as, value for value; anything else
            # (a tuple, a float, a date written by default=str) is hashed as it reads back.
            digest = _entry_hash(prev, seq, ts, event, peer, detail_text, actor,
                                 parsed=detail if type(detail) is dict and _plain(detail) else None)
            conn.execute("INSERT INTO audit (seq, ts, event, peer, detail, prev, hash, actor) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [seq, ts, event, peer, detail_text, prev, digest, actor])
            prev = digest
            seqs.append(seq)
    return seqs


def entries(db: store.DB, limit: int | None = None, peer: str | None = None,
            also: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The latest entries, oldest first; with peer, only those about it (and about the node IDs in
    `also`: the ones it replaced, spec 4.7)."""
    sql = "SELECT seq, ts, event, peer, detail, hash, actor FROM audit"
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
    return [{"seq": r[0], "ts": r[1], "event": r[2], "peer": r[3], "actor": r[6], "detail": json.loads(r[4]),
             "hash": r[5]} for r in reversed(rows)]


def head(db: store.DB) -> tuple[int, str]:
    """The number of the last entry and its hash: what a signed head states."""
    row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else archived_through(db)


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
    yield from db.execute("SELECT seq, ts, event, peer, detail, prev, hash, actor FROM audit ORDER BY seq")


def archived_through(db: store.DB) -> tuple[int, str]:
    """The last entry an archive holds, and its hash: where the live table starts (0 and the
    genesis hash if nothing was archived). Written by auditarchive.py."""
    row = db.execute("SELECT upto, head FROM audit_archives ORDER BY upto DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else (0, GENESIS)


def verify_rows(rows: Iterable[tuple[Any, ...]], start: int = 0, prev: str = GENESIS) -> Verdict:
    """Check a run of entries (seq, ts, event, peer, detail, prev, hash, actor) that follows entry
    `start`, whose hash was `prev`: the live table from its archived checkpoint, or an archive file."""
    n = 0
    for seq, ts, event, peer, detail, stored_prev, stored_hash, actor in rows:
        n += 1
        if seq != start + n:
            return Verdict(False, n, seq, f"entry {start + n} is missing (found {seq})")
        if stored_prev != prev:
            return Verdict(False, n, seq, f"entry {seq} does not follow entry {seq - 1}")
        try:
            digest = _entry_hash(prev, seq, ts, event, peer, detail, actor or "")
        except (ValueError, TypeError):
            return Verdict(False, n, seq, f"entry {seq} is not readable")
        if digest != stored_hash:
            return Verdict(False, n, seq, f"entry {seq} was changed after it was written")
        prev = stored_hash
    return Verdict(True, n)


def verify(db: store.DB) -> Verdict:
    """The live chain, from the genesis or from the checkpoint at which the last archive ends
    (whose signature witness.verify checks)."""
    start, prev = archived_through(db)
    return verify_rows(_rows(db), start, prev)


def drop_archived(conn: Any, upto: int) -> int:
    """Remove entries up to `upto` from the live table, in the transaction that recorded their
    archive (the trigger refuses any entry no archive holds)."""
    return conn.execute("DELETE FROM audit WHERE seq <= ?", [upto]).rowcount


def restores(db: store.DB) -> list[dict[str, Any]]:
    """The `restored` entries (backup.restore): where the log was cut back to a backup's head."""
    out = []
    for seq, ts, detail in db.execute("SELECT seq, ts, detail FROM audit WHERE event = 'restored' ORDER BY seq"):
        d = json.loads(detail)
        if isinstance(d.get("backup_entries"), int) and isinstance(d.get("backup_head"), str):
            out.append({"seq": seq, "ts": ts, "entries": d["backup_entries"], "head": d["backup_head"],
                        "backup_created": d.get("backup_created")})
    return out
