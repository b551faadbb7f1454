"""Peers' records this node has already checked in full, remembered by content.

Walking the whole Dataview checks every record's schema and its origin's Ed25519 signature, ~70 µs
a record and most of a walk's CPU. From one walk to the next almost every record is the same, and a
signature that verified once, by the same key over the same bytes, verifies forever. So the digest
of (this protocol's profile schema, the origin's key, the signed bytes, the signature) of a record
that passed is proof enough the next time. A digest reveals nothing of a record (it covers a
random-looking signature and ID); entries expire after MAX_AGE_DAYS, so the table stays about the
size of what peers share, and a record unseen for that long is checked in full again.

This module holds the table's only reads and writes. Readers in worker processes open their own
read-only connection (a connection must not cross a fork).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import sqlite3
from typing import Iterable, Sequence

from . import schemas, store
from .signing import canonical

MAX_AGE_DAYS = 30
_SALT = b"discnode checked profile v1\0"
_CHUNK = 500  # digests per SELECT: well under SQLite's bound-parameter limit


@functools.cache
def _schema_tag() -> bytes:
    """Changes whenever the profile schema or its code lists do: a check under other rules is void."""
    return hashlib.sha256(canonical([schemas.schema("profile"), schemas.schema("codes")])).digest()


def digest(public_key: bytes, message: bytes, sig: str) -> bytes:
    return hashlib.sha256(b"".join((_SALT, _schema_tag(), public_key, message, b"\0", sig.encode()))).digest()


_readers: dict[tuple[int, str], sqlite3.Connection] = {}


def _reader(path: str) -> sqlite3.Connection:
    key = (os.getpid(), path)  # never a connection inherited from the parent of a fork
    if key not in _readers:
        _readers[key] = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10, check_same_thread=False)
    return _readers[key]


def known(db_path: str, digests: Sequence[bytes]) -> set[bytes]:
    """Which of these digests were checked before (empty if the table cannot be read)."""
    found: set[bytes] = set()
    try:
        conn = _reader(db_path)
        for i in range(0, len(digests), _CHUNK):
            chunk = digests[i:i + _CHUNK]
            found.update(row[0] for row in conn.execute(
                f"SELECT digest FROM checked_records WHERE digest IN ({','.join('?' * len(chunk))})", chunk))
    except sqlite3.Error:
        return set()  # a cache: without it, every record is simply checked in full
    return found


def remember(db: store.DB, digests: Iterable[bytes], today: dt.date) -> None:
    """Record digests of records that passed every check, and forget the expired ones."""
    rows = [(d, today.isoformat()) for d in digests]
    cutoff = (today - dt.timedelta(days=MAX_AGE_DAYS)).isoformat()
    with store.write(db) as conn:
        conn.executemany("INSERT OR IGNORE INTO checked_records (digest, checked) VALUES (?, ?)", rows)
        conn.execute("DELETE FROM checked_records WHERE checked < ?", [cutoff])


def count(db: store.DB) -> int:
    return int(db.execute("SELECT count(*) FROM checked_records").fetchone()[0])
