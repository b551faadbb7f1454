"""Erasure and rectification reach recipients (spec section 8.8; UK GDPR Art 19).

The one module that writes the `notices` table. When this node deletes one of its profiles, makes
it local-only, or corrects it, it signs a notice to every partner the disclosure log says received
it (disclosures.py), kept here until delivered by peering.deliver_pending (the one delivery
mechanism: outbox, retry, back-off). The partner's reply is its signed receipt, kept with the
notice; a notice without one is a receipt outstanding (`peer list`).

A rectification names the new revision and carries no record: the recipient drops what it kept of
older revisions and fetches the record again if it still needs it, through the peer API, under the
agreement in force then (scopes, local-only, withheld fields). So a correction never reaches a
partner by a path that bypasses those rules, and a notice can be delivered after the agreement ended.

Receiving one (the partner's side), this node drops what it kept of the sender's record: its
checks (checked.py), revealed copies (revealed.py); for an erasure also its same-person links to it
(links.py) and the sightings it reported of it (sightings.py). It lists the files its
administrator exported that hold it (exports.py), for the inbox, and answers with a signed receipt.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Iterable

from . import audit, checked, exports, links, peers, revealed, sightings, store
from .documents.notice import (DROPPED, ERASURE, RECTIFICATION, check_notice, check_receipt, new_notice,
                               new_receipt)
from .errors import Conflict, Refused, Unauthenticated
from .identity import Identity
from .signing import document_hash

__all__ = ["ERASURE", "RECTIFICATION", "prepare", "receive", "take_receipt", "undelivered", "mark_delivered",
           "outstanding", "sent_about", "recent_received", "Received", "held_for", "recover", "told_of"]

#: Notices received this recently are in the inbox.
INBOX_DAYS = 30


def _rows(db: store.DB, where: str, params: list[Any]) -> list[dict[str, Any]]:
    cur = db.execute(f"SELECT * FROM notices WHERE {where} ORDER BY created, rowid", params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


# --- the origin's side ------------------------------------------------------------------------


def prepare(db: store.DB, identity: Identity, about: str, kind: str, revision: int,
            recipients: Iterable[str]) -> list[str]:
    """Sign and keep a notice about this node's profile `about` to each recipient, in the caller's
    transaction; returns their hashes. A notice not yet delivered to a recipient about the same
    profile is superseded by the new one: only the latest state of a record matters to it."""
    me = identity.node_id
    out = []
    with store.write(db) as conn:
        for peer in sorted(set(recipients) - {me}):
            doc = new_notice(identity, peer, about, kind, revision, store.now_ts())
            digest = document_hash(doc)
            conn.execute("UPDATE notices SET superseded = 1 WHERE sender = ? AND recipient = ? AND about = ? "
                         "AND delivered = 0", [me, peer, about])
            conn.execute("INSERT INTO notices (hash, id, sender, recipient, about, kind, revision, doc, created) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [digest, doc["id"], me, peer, about, kind, revision, json.dumps(doc), store.now_ts()])
            audit.append(db, "notice-sent", peer, id=doc["id"], about=about, kind=kind, revision=revision)
            out.append(digest)
    return out


def undelivered(db: store.DB, me: str) -> list[tuple[str, str, dict[str, Any]]]:
    """Notices waiting for their partner: to every partner this node ever vouched for, whatever the
    agreement's state now (a partner that received a record must hear of its erasure even after
    the agreement ended)."""
    return [(r["hash"], r["recipient"], json.loads(r["doc"]))
            for r in _rows(db, "sender = ? AND delivered = 0 AND superseded = 0", [me])
            if peers.vouched_for(db, me, r["recipient"])]


def mark_delivered(db: store.DB, digest: str, refusal: str | None) -> None:
    with store.write(db) as conn:
        conn.execute("UPDATE notices SET delivered = 1, refusal = ? WHERE hash = ?",
                     [refusal[:500] if refusal else None, digest])


def take_receipt(db: store.DB, me: str, digest: str, public_key: bytes, body: Any) -> dict[str, Any]:
    """The receipt a partner answered notice `digest` with, checked and kept (InvalidInput or
    Unauthenticated if it is not a valid receipt for it, and nothing is kept)."""
    (row,) = _rows(db, "hash = ?", [digest])
    doc = check_receipt(body, row["recipient"], me, public_key, json.loads(row["doc"]), digest)
    with store.write(db) as conn:
        conn.execute("UPDATE notices SET receipt = ?, receipt_at = ? WHERE hash = ?",
                     [json.dumps(doc), store.now_ts(), digest])
        audit.append(db, "notice-receipt-received", row["recipient"], id=row["id"], about=row["about"],
                     kind=row["kind"], dropped=doc["dropped"], files=doc["files"])
    return doc


def _sent_view(row: dict[str, Any]) -> dict[str, Any]:
    receipt = json.loads(row["receipt"]) if row["receipt"] else None
    return {"id": row["id"], "to": row["recipient"], "about": row["about"], "kind": row["kind"],
            "revision": row["revision"], "created": row["created"], "delivered": bool(row["delivered"]),
            "refusal": row["refusal"], "superseded": bool(row["superseded"]), "receipt": receipt is not None,
            "receipt_at": row["receipt_at"], "dropped": receipt["dropped"] if receipt else None,
            "files": receipt["files"] if receipt else None}


def sent_about(db: store.DB, me: str, profile_id: str) -> list[dict[str, Any]]:
    """The notices this node sent about one of its profiles, oldest first."""
    return [_sent_view(r) for r in _rows(db, "sender = ? AND about = ?", [me, profile_id])]


def outstanding(db: store.DB, me: str) -> dict[str, int]:
    """Per partner, the notices it has not returned a receipt for (not yet delivered, refused, or
    answered without a valid receipt); superseded ones excepted."""
    return dict(db.execute("SELECT recipient, count(*) FROM notices WHERE sender = ? AND superseded = 0 "
                           "AND receipt IS NULL GROUP BY recipient", [me]).fetchall())


# --- the partner's side -----------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """What receiving a notice did: the receipt returned, and the files listed for the administrator."""

    receipt: dict[str, Any]
    files: list[str]
    again: bool = False


def ever_agreed(db: store.DB, peer: str) -> bool:
    """Whether an agreement with `peer` was ever in force (either side's accept is held): only
    such a partner can have received this node's records, or sent it its own."""
    return db.execute("SELECT 1 FROM consent_docs WHERE peer = ? AND type = 'accept' LIMIT 1",
                      [peer]).fetchone() is not None


def receive(db: store.DB, identity: Identity, peer: str, public_key: bytes, body: Any) -> Received:
    """A partner's notice about one of its own records: drop what this node kept of it, list the
    files exported from it, and sign a receipt; all in one transaction. A notice already taken
    (same sender and id, same document) is answered with the receipt returned then."""
    me = identity.node_id
    if not ever_agreed(db, peer):
        raise Refused("no agreement with this node was ever in force: it holds none of your records")
    doc = check_notice(body, peer, me, public_key)
    digest = document_hash(doc)
    held = _rows(db, "sender = ? AND id = ?", [peer, doc["id"]])
    if held:
        if held[0]["hash"] != digest:
            raise Conflict("another notice with that id was received")
        return Received(json.loads(held[0]["receipt"]), json.loads(held[0]["files"] or "[]"), again=True)
    about = doc["about"]["id"]
    erased = doc["kind"] == ERASURE
    below = None if erased else doc["revision"]
    with store.write(db) as conn:
        dropped = {"checked": checked.forget(db, peer, about),
                   "revealed": revealed.forget(db, peer, about, below),
                   "links": links.forget(db, peer, about) if erased else 0,
                   "sightings": sightings.forget_sent(db, me, peer, about) if erased else 0}
        files = exports.holding(db, peer, about, below)
        receipt = new_receipt(identity, doc, digest, dropped, len(files), store.now_ts())
        conn.execute("INSERT INTO notices (hash, id, sender, recipient, about, kind, revision, doc, delivered, "
                     "receipt, receipt_at, files, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)",
                     [digest, doc["id"], peer, me, about, doc["kind"], doc["revision"], json.dumps(doc),
                      json.dumps(receipt), store.now_ts(), json.dumps(files), store.now_ts()])
    return Received(receipt, files)


def _received_view(row: dict[str, Any]) -> dict[str, Any]:
    receipt = json.loads(row["receipt"]) if row["receipt"] else {}
    return {"id": row["id"], "from": row["sender"], "about": row["about"], "kind": row["kind"],
            "revision": row["revision"], "created": row["created"], "files": json.loads(row["files"] or "[]"),
            "dropped": receipt.get("dropped", {k: 0 for k in DROPPED})}


def recent_received(db: store.DB, me: str, days: int = INBOX_DAYS) -> list[dict[str, Any]]:
    """Notices partners sent this node in the last `days`, for the inbox."""
    since = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [_received_view(r) for r in _rows(db, "recipient = ? AND created >= ?", [me, since])]



# --- after a restore from an older backup (spec section 9.7) ----------------------------------


def held_for(db: store.DB, peer: str) -> list[dict[str, Any]]:
    """The notices `peer` sent this node, exactly as received, each with the receipt this node
    returned: what `peer` needs to re-apply its erasures if it is restored from an older backup."""
    return [{"notice": json.loads(r["doc"]), "receipt": json.loads(r["receipt"])}
            for r in _rows(db, "sender = ? AND receipt IS NOT NULL", [peer])]


def _own_notice(doc: Any, me: str, peer: str, own_keys: list[bytes]) -> dict[str, Any]:
    """A notice this node signed to `peer`: with its current key or a former one valid then."""
    for key in own_keys:
        try:
            return check_notice(doc, me, peer, key)
        except Unauthenticated:
            continue
    raise Unauthenticated("the notice is not signed by this node")


def recover(db: store.DB, me: str, own_keys: Any, peer: str, peer_keys: Any, item: Any) -> dict[str, Any] | None:
    """Keep a notice this node sent `peer` and the receipt `peer` returned, as a partner held them
    for it (recovery.py): the notice checked as this node's own document (schema, from this node to
    `peer` about its own record, signed by one of `own_keys(issued_at)`), the receipt as on first
    receipt (signed by one of `peer_keys(issued_at)`, naming that notice). Returns the notice if it
    is new here (signed after the backup was made: what it says happened is undone), None if it was
    held already (its receipt is filled in if missing); InvalidInput or Unauthenticated (and
    nothing kept) if either does not verify."""
    if not isinstance(item, dict) or not isinstance(item.get("notice"), dict):
        raise Unauthenticated("not a notice with its receipt")
    notice, body = item["notice"], item.get("receipt")
    doc = _own_notice(notice, me, peer, own_keys(notice.get("issued_at")))
    digest = document_hash(doc)
    receipt: dict[str, Any] | None = None
    for key in peer_keys(body.get("issued_at") if isinstance(body, dict) else None):
        try:
            receipt = check_receipt(body, peer, me, key, doc, digest)
            break
        except Unauthenticated:
            continue
    if receipt is None:
        raise Unauthenticated("the receipt is not signed by that partner")
    held = _rows(db, "sender = ? AND id = ?", [me, doc["id"]])
    if held and held[0]["hash"] != digest:
        raise Conflict("another notice with that id is held")
    if held and held[0]["receipt"]:
        return None
    with store.write(db) as conn:
        if held:
            conn.execute("UPDATE notices SET delivered = 1, refusal = NULL, receipt = ?, receipt_at = ? "
                         "WHERE hash = ?", [json.dumps(receipt), store.now_ts(), digest])
        else:
            conn.execute("INSERT INTO notices (hash, id, sender, recipient, about, kind, revision, doc, delivered, "
                         "receipt, receipt_at, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
                         [digest, doc["id"], me, peer, doc["about"]["id"], doc["kind"], doc["revision"],
                          json.dumps(doc), json.dumps(receipt), store.now_ts(), doc["issued_at"]])
        # An older notice to the same partner about the same profile, still waiting, is moot now.
        conn.execute("UPDATE notices SET superseded = 1 WHERE sender = ? AND recipient = ? AND about = ? "
                     "AND receipt IS NULL AND created <= ?", [me, peer, doc["about"]["id"], doc["issued_at"]])
        audit.append(db, "recovered", peer, kind="notice", id=doc["id"], about=doc["about"]["id"],
                     notice_kind=doc["kind"], revision=doc["revision"], new=not held)
    return None if held else doc


def told_of(db: store.DB, me: str, about: str) -> set[str]:
    """The partners holding a receipt-acknowledged erasure notice of this node's profile `about`."""
    return {r[0] for r in db.execute("SELECT recipient FROM notices WHERE sender = ? AND about = ? AND kind = ? "
                                     "AND receipt IS NOT NULL", [me, about, ERASURE]).fetchall()}
