"""Profiles match-only partners revealed to this node (the asker's side of `discnode reveal`).
The one module that writes the revealed table.

A holder serves a revealed profile only in its reply to `discnode reveal NODE_ID:REF` once its
administrator allowed it. The asker keeps those signed records, keyed by (holder, reference), so
that `level-two --include-match` can show them without asking the holder again (asking again would
open a new reveal request for every hit). They are the holder's records, not this node's: no
server code reads this table, so they are never served to anyone (non-transitivity), and they are
verified again by the holder's pinned key each time they are read.
"""

from __future__ import annotations

import json
from typing import Any

from . import peers, store


def keep(db: store.DB, holder: str, ref: str, records: list[dict[str, Any]]) -> None:
    """Keep the verified records `holder` revealed for `ref` (replacing what was kept: a profile
    made local-only or deleted since is no longer in the holder's reply)."""
    with store.write(db) as conn:
        conn.execute("INSERT INTO revealed (holder, ref, records, received) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT (holder, ref) DO UPDATE SET records = excluded.records, "
                     "received = excluded.received",
                     [holder, ref, json.dumps(records, sort_keys=True), store.now_ts()])


def kept(db: store.DB, holder: peers.Peer, ref: str) -> list[dict[str, Any]] | None:
    """The records `holder` revealed for `ref`, each verified again (a record that no longer
    verifies, say after a key change, is left out); None if nothing was revealed."""
    row = db.execute("SELECT records FROM revealed WHERE holder = ? AND ref = ?",
                     [holder.node_id, ref]).fetchone()
    if row is None:
        return None
    try:
        records = json.loads(row[0])
    except ValueError:
        return []
    # Here, not at the top: notices (which a serving node loads) import this module, and dataview
    # brings the walk's process pool (multiprocessing) with it, which serving never uses.
    from .dataview import verify_records
    good, _, _ = verify_records(records, holder)
    return good


def forget(db: store.DB, holder: str, profile_id: str, below: int | None = None) -> int:
    """Drop the holder's revealed record `profile_id` wherever it is kept (only revisions below
    `below`, if given: a rectification); a reference left with no record goes. Returns how many
    records were dropped."""
    dropped = 0
    with store.write(db) as conn:
        for ref, text in conn.execute("SELECT ref, records FROM revealed WHERE holder = ?", [holder]).fetchall():
            try:
                records = json.loads(text)
            except ValueError:
                continue
            keep = [r for r in records if not (isinstance(r, dict) and r.get("id") == profile_id and (
                below is None or not isinstance(r.get("revision", 0), int) or r.get("revision", 0) < below))]
            if len(keep) == len(records):
                continue
            dropped += len(records) - len(keep)
            if keep:
                conn.execute("UPDATE revealed SET records = ? WHERE holder = ? AND ref = ?",
                             [json.dumps(keep, sort_keys=True), holder, ref])
            else:
                conn.execute("DELETE FROM revealed WHERE holder = ? AND ref = ?", [holder, ref])
    return dropped
