"""Peers' records this node has already checked in full, remembered by content.

Walking the whole Dataview checks every record's schema and its origin's Ed25519 signature, ~70 µs
a record and most of a walk's CPU. From one walk to the next almost every record is the same, and a
signature that verified once, by the same key over the same bytes, verifies forever. So the digest
of (this protocol's profile schema, the origin's key, the record's bytes exactly as received) of a
record that passed is proof enough the next time. The received bytes bind the signed bytes and the
signature: parsing is a function of the bytes, so the same bytes give the same record, hence the same
canonical form and the same `sig`, and any change to them (even one that leaves the signed content
as it was, such as whitespace) gives another digest and a check in full. Digesting the bytes as
received, rather than the canonical form, spares a repeat walk re-canonicalising every record, which
was most of its work. A digest reveals nothing of a record (it covers a random-looking signature and ID). Entries expire MAX_AGE_DAYS after their check, so the table stays
about the size of what peers shared in that time, and every record is checked in full at least that
often.

Only a record from a reply that held no number with a fraction or an exponent is remembered
(dataview.judge): a repeat walk reads known texts with orjson (dataview.read_known), which reads
`20.0` as a float where wirejson reads the integer 20, so no known text may hold one. The "v3" in
the personalisation is that rule: digests remembered before it (v2) may be of such texts, and
match nothing now.

This module holds the table's only reads and writes.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from typing import Callable, Iterable

from . import schemas, store
from .signing import canonical

MAX_AGE_DAYS = 30
_PERSON = b"discnode-chk-v3"  # BLAKE2 personalisation: these digests mean nothing elsewhere


@functools.cache
def _schema_tag() -> bytes:
    """Changes whenever the profile schema or its code lists do: a check under other rules is void."""
    return hashlib.blake2b(canonical([schemas.schema("profile"), schemas.schema("codes")]), digest_size=32).digest()


def digest(public_key: bytes, received: bytes) -> bytes:
    """The digest of one record as received (its JSON text, byte for byte) from the origin whose
    pinned key is public_key. Both the schema tag and the key are fixed-length, so the fields cannot
    run into each other."""
    # BLAKE2b (RFC 7693) from Python's own build, not OpenSSL: this runs in forked workers, where
    # a library lock held by a parent thread at the fork could never be released.
    return hashlib.blake2b(b"".join((_schema_tag(), public_key, received)), digest_size=32, person=_PERSON).digest()


def digester(public_key: bytes, head: bytes = b"") -> Callable[[bytes], bytes]:
    """digest(public_key, head + ...) as a function of the rest of the received bytes: the same
    digests, from a BLAKE2b state that has taken the schema tag, the key and head once and is
    copied for each record (a third less CPU than digest on a ~1 kB record; a repeat walk takes
    one a record, and gives the opening every record shares as head rather than join it to each)."""
    prefix = hashlib.blake2b(b"".join((_schema_tag(), public_key, head)), digest_size=32, person=_PERSON)

    def of(received: bytes) -> bytes:
        state = prefix.copy()
        state.update(received)
        return state.digest()
    return of


def load(db: store.DB, today: dt.date) -> frozenset[bytes]:
    """Every unexpired digest: read once, before a walk starts its worker processes, which then
    share it (forked, nothing is copied or pickled). Workers never open the database themselves:
    SQLite must not be used in a child forked while another thread may hold its locks."""
    cutoff = (today - dt.timedelta(days=MAX_AGE_DAYS)).isoformat()
    return frozenset(row[0] for row in db.execute("SELECT digest FROM checked_records WHERE checked >= ?", [cutoff]))


#: One record that passed every check: its digest, and the (origin, profile ID) it was, so that
#: an erasure or rectification notice from that origin can forget it (notices.py).
Check = tuple[bytes, str, str]


def remember(db: store.DB, checks: Iterable[Check], today: dt.date) -> None:
    """Record digests of records that passed every check, and forget the expired ones."""
    rows = [(d, today.isoformat(), origin, pid) for d, origin, pid in checks]
    cutoff = (today - dt.timedelta(days=MAX_AGE_DAYS)).isoformat()
    with store.write(db) as conn:
        conn.executemany("INSERT OR IGNORE INTO checked_records (digest, checked, origin, profile_id) "
                         "VALUES (?, ?, ?, ?)", rows)
        conn.execute("DELETE FROM checked_records WHERE checked < ?", [cutoff])


def forget(db: store.DB, origin: str, profile_id: str) -> int:
    """Forget every check of the origin's profile (any revision): its next arrival is checked in
    full. Returns how many were forgotten."""
    with store.write(db) as conn:
        return conn.execute("DELETE FROM checked_records WHERE origin = ? AND profile_id = ?",
                            [origin, profile_id]).rowcount


def count(db: store.DB) -> int:
    return int(db.execute("SELECT count(*) FROM checked_records").fetchone()[0])
