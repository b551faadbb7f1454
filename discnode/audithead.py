"""The signed head of an audit log (spec section 9.3), and what heads prove about a log. Pure.

A hash chain shows that no entry *inside* it was changed, but not where it ends: whoever can write
the file can cut off its last entries, or rewrite one and recompute every later hash. A head is
the node's signed statement "my log had `entries` entries and entry `entries` had hash `head`".
Kept by the node (a checkpoint) and by its partners (witnesses), where the node's own
administrator cannot reach it, any later log that is shorter, or differs at that entry, is caught.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from . import PROTOCOL_VERSION, schemas
from .errors import Unauthenticated
from .identity import Identity
from .signing import sign_document, verify_document

GENESIS = "0" * 64


def new_head(identity: Identity, entries: int, head: str, issued_at: str) -> dict[str, Any]:
    doc = sign_document({"type": "audit-head", "v": PROTOCOL_VERSION, "node_id": identity.node_id,
                         "entries": entries, "head": head, "issued_at": issued_at}, identity)
    schemas.validate("audit-head", doc)
    return doc


def check_head(doc: Any, signer: str, public_key: bytes) -> dict[str, Any]:
    """A well-formed head of `signer`'s log, signed by it; InvalidInput or Unauthenticated if not."""
    schemas.validate("audit-head", doc)
    if doc["node_id"] != signer:
        raise Unauthenticated("an audit head may only be sent by the node whose log it is")
    if doc["entries"] == 0 and doc["head"] != GENESIS:
        raise Unauthenticated("an empty log's head is 64 zeros")
    verify_document(doc, public_key)
    return dict(doc)


class Outcome(str, enum.Enum):
    """What a witness makes of a head, given the latest one it holds from that node."""

    NEWER = "newer"        # more entries: becomes the latest
    SAME = "same"          # the one already held
    ROLLBACK = "rollback"  # fewer entries than one already signed: kept as evidence, flagged
    FORK = "fork"          # as many entries, another hash: kept as evidence, flagged


def compare(held: Mapping[str, Any] | None, incoming: Mapping[str, Any]) -> Outcome:
    if held is None or incoming["entries"] > held["entries"]:
        return Outcome.NEWER
    if incoming["entries"] < held["entries"]:
        return Outcome.ROLLBACK
    return Outcome.SAME if incoming["head"] == held["head"] else Outcome.FORK


@dataclass(frozen=True)
class Finding:
    """One way the log differs from a head signed earlier. `kind` is truncated or rewritten."""

    kind: str
    entry: int
    source: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "entry": self.entry, "source": self.source, "message": self.message}


def against(head: Mapping[str, Any], length: int, hash_at: Callable[[int], str | None], source: str
            ) -> Finding | None:
    """How the log (`length` entries; hash_at(n) the stored hash of entry n) contradicts a head it
    once had, if it does. `source` says who held the head ("checkpoint of ...", "partner ...")."""
    n = head["entries"]
    if n > length:
        return Finding("truncated", length + 1, source,
                       f"entries {length + 1}..{n} missing: the log ends at {length} but {source} "
                       f"witnessed {n} (a head signed {head['issued_at']})")
    if n and hash_at(n) != head["head"]:
        return Finding("rewritten", n, source,
                       f"hash at entry {n} differs from the head {source} holds (signed "
                       f"{head['issued_at']}): an entry at or before {n} was changed")
    return None


#: A witness keeps every head of a node received in this many days...
RECENT_DAYS = 32
#: ...up to this many (hourly checkpoints make 768); then the latest of each month for ten years.
MAX_RECENT = 1000


def retained(received: Mapping[str, str], newest: str, now: dt.datetime) -> set[str]:
    """Which of one node's heads a witness keeps, given when each arrived (by the witness's own
    clock, never the signed `issued_at`) and which arrived just now.

    A rewrite of entry k is caught by any kept head with at least k entries signed before the
    rewrite. So recent heads are all kept: were only the latest kept, a node could rewrite an old
    entry, recompute every later hash, and have its next head replace the one that proves it.
    Past the cap, a new head replaces the previous newest, never an older one, so a flood of heads
    churns one slot and cannot push out the heads signed before an attack. Older than RECENT_DAYS,
    the latest of each month is kept, so that the table does not grow without end."""
    recent: list[tuple[str, str]] = []
    months: dict[str, tuple[str, str]] = {}
    for key, when in received.items():
        if key == newest:
            continue
        at = dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
        age = now - at
        if age < dt.timedelta(days=RECENT_DAYS):
            recent.append((when, key))
        elif age < dt.timedelta(days=3653):
            month = at.strftime("%Y-%m")
            if month not in months or (when, key) > months[month]:
                months[month] = (when, key)
    recent.sort()
    return {key for _, key in recent[:MAX_RECENT - 1]} | {key for _, key in months.values()} | {newest}
