"""After a restore from an older backup: ask every partner what it holds of the lost time, and
re-apply it (spec section 9.7).

What the backup cannot know: agreements offered, accepted or revoked since it was made (by either
side), and how far this node's own audit log had grown (the heads partners witnessed). Each
partner answers `GET /v1/recovery` with the consent documents between the two nodes and the heads
of this node's log it witnessed. Nothing is taken on the partner's word: every consent document is
checked as on first receipt (schema, between these two nodes, signed by its signer's pinned key,
or by this node's own key for documents it signed itself), and every head must be signed by this
node. A partner can withhold what it holds, never forge: a document it did not get from its signer
does not verify, and a revocation it hides is still in force at the partner itself.

Erasure and rectification notices (notices.py): a restore from an older backup brings back a
profile this node erased since, and loses the receipts partners returned. Each partner also
returns the notices this node sent it, with its receipt for each. A notice is checked as this
node's own document (signed by its key, or a former key valid then), the receipt as on first
receipt; a partner cannot forge either. Once every partner has answered, an erasure new to this
node is re-applied: the profile is deleted again through the one delete path, and only partners
holding no receipt for it are sent a notice. A rectification needs nothing undone: it is kept.
An erasure can mean "deleted" or "made local-only" (spec 8.8); the notice does not say which, so
the profile is deleted: erring towards the erasure partners were told of.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from . import audit, contact, keys, notices, peers, profiles, schemas, store, witness
from .audithead import check_head
from .client import PeerClient, error_for
from .errors import DiscnodeError, NotFound
from .home import Home, today
from .recoveryapi import PATH
from .signing import document_hash


def _consent(home: Home, peer: peers.Peer, docs: list[Any], _later: list[dict[str, Any]]) -> dict[str, int]:
    """Re-apply the consent documents `peer` holds: those this node lacks and that verify."""
    held = {document_hash(d) for d in peers.documents(home.db, peer.node_id)}
    applied = refused = 0
    for doc in docs:
        try:
            if not isinstance(doc, dict) or document_hash(doc) in held:
                continue
            peers.add_document(home.db, peer.node_id, doc, delivered=True, own=home.identity)
        except DiscnodeError:
            refused += 1
            continue
        held.add(document_hash(doc))
        applied += 1
        audit.append(home.db, "recovered", peer.node_id, kind="consent", type=doc["type"], hash=document_hash(doc),
                     issued_at=doc["issued_at"])
    return {"consent_applied": applied, "consent_refused": refused}


def _heads(home: Home, peer: peers.Peer, reply: dict[str, Any], _later: list[dict[str, Any]]) -> dict[str, int]:
    """Keep the heads of this node's log that `peer` witnessed, as this node's own checkpoints:
    the signed proof of how far the log had grown before the restore."""
    docs = reply["heads"] + [e["head"] for e in reply["evidence"]]
    good = []
    for doc in docs:
        try:
            good.append(check_head(doc, home.node_id, home.identity.public_key))
        except DiscnodeError:
            continue
    kept = witness.keep_own(home.db, home.node_id, good)
    return {"heads_kept": kept, "heads_refused": len(docs) - len(good)}


def _notices(home: Home, peer: peers.Peer, items: list[Any], later: list[dict[str, Any]]) -> dict[str, int]:
    """Keep the notices this node sent `peer`, with its receipts, that verify; those new here go
    to `later`, for _reapply once every partner answered (so that none is told twice)."""
    def own_keys(when: Any) -> list[bytes]:
        former = keys.own_keys_at(home.db, when) if isinstance(when, str) else []
        return [home.identity.public_key] + [k for k in former if k != home.identity.public_key]

    def peer_keys(when: Any) -> list[bytes]:
        return peers.keys_for(home.db, peer.node_id, when)

    kept = refused = 0
    for item in items:
        try:
            doc = notices.recover(home.db, home.node_id, own_keys, peer.node_id, peer_keys, item)
        except DiscnodeError:
            refused += 1
            continue
        kept += 1
        if doc is not None:
            later.append(doc)
    return {"notices_kept": kept, "notices_refused": refused}


def _reapply(home: Home, new: list[dict[str, Any]]) -> int:
    """Erase again each profile an erasure new to this node names, if the restored copy is one
    that erasure covered (its revision or older). Returns how many were deleted."""
    erased = 0
    for about in sorted({d["about"]["id"] for d in new if d["kind"] == notices.ERASURE}):
        last = max(d["revision"] for d in new if d["kind"] == notices.ERASURE and d["about"]["id"] == about)
        try:
            held = store.get_profile(home.db, about)
        except NotFound:
            continue
        if held["origin"] != home.node_id or int(held.get("revision", 0)) > last:
            continue  # changed after the erasure (the notice is history), or not this node's
        profiles.delete(home, about, told=notices.told_of(home.db, home.node_id, about), recovered=True)
        erased += 1
    return erased


#: Each field of a recovery reply and what re-applies it; each may set documents aside for _reapply.
RECOVERERS: dict[str, Callable[[Home, peers.Peer, Any, list[dict[str, Any]]], dict[str, int]]] = {
    "consent": _consent,
    "audit_heads": _heads,
    "notices": _notices,
}


async def _ask(client: PeerClient, peer: peers.Peer, timeout: float) -> tuple[dict[str, Any], float | None]:
    sent = time.time()
    reply = await client.request(peer, "GET", PATH, timeout=timeout)
    if reply.status != 200:
        raise error_for(reply.status, f"{peer.name}: HTTP {reply.status}")
    held = reply.json()
    schemas.validate("recovery-reply", held)
    return held, contact.offset_from_date(reply.date, sent, time.time())


async def recover(home: Home, client: PeerClient | None = None, timeout: float = 5.0) -> list[dict[str, Any]]:
    """Ask every known partner (agreement past or present) and re-apply what verifies; then sign a
    new checkpoint, so that the log's own record shows how far it had been. One row per partner."""
    known = peers.all_peers(home.db)
    own = client is None
    c = client or PeerClient(home.identity, timeout=timeout)
    try:
        answers = await asyncio.gather(*(_ask(c, p, timeout) for p in known), return_exceptions=True)
    finally:
        if own:
            await c.close()
    rows = []
    later: list[dict[str, Any]] = []
    for peer, answer in zip(known, answers):
        row: dict[str, Any] = {"node_id": peer.node_id, "name": peer.name}
        if isinstance(answer, BaseException):
            if not isinstance(answer, DiscnodeError):
                raise answer
            contact.record(home.db, peer.node_id, ok=False, error=str(answer))
            row.update(status="unreachable", error=str(answer))
        else:
            held, offset = answer
            contact.record(home.db, peer.node_id, ok=True, offset=offset)
            row["status"] = "recovered"
            for name, apply in RECOVERERS.items():
                row.update(apply(home, peer, held.get(name, []), later))  # `notices` is optional (9.7)
            row["agreement"] = peers.agreement(home.db, home.node_id, peer.node_id, today()).state.value
        rows.append(row)
    erased = _reapply(home, later)
    audit.append(home.db, "recovery", "", partners=len(known),
                 reached=sum(1 for r in rows if r["status"] == "recovered"),
                 consent_applied=sum(r.get("consent_applied", 0) for r in rows),
                 notices_kept=sum(r.get("notices_kept", 0) for r in rows), erased_again=erased)
    witness.checkpoint(home)
    return rows
