"""Proposals: a partner tells a profile's origin who its ID-sought person is (spec section 8.4).

The one module that writes the `proposals` table. The proposer (B) signs a proposal about a
profile the origin (A) shares with it, naming B's own profile of that person or a person by name;
A checks it holds that profile, ID-sought and shared with B, and keeps the proposal for its
administrator, who confirms (profiles.identify: the profile becomes identified, images, incidents
and exclusion kept) or declines it, with a reason. B is told the outcome, signed. Both documents
travel through peering.deliver_pending, the one delivery mechanism, and only while the agreement
is active: a revoke stops them at once, both ways.

Non-transitivity: A's row is A's private note of B's reference; nothing of it is served. B's names
enter A's profile only when A's administrator confirms them (or types others).
"""

from __future__ import annotations

import json
from typing import Any

from . import audit, links, peers, profiles, store
from .documents.proposal import CONFIRMED, DECLINED, check_outcome, check_proposal, new_outcome, new_proposal
from .errors import Conflict, InvalidInput, NotFound
from .home import Home, today
from .refs import check_profile_id, check_text, parse_ref, require_active
from .signing import document_hash

PENDING = "pending"
REFUSED = "refused"
MAX_REASON = 500
MAX_NOTE = 1000
#: Proposals from one partner awaiting our administrator, at most: a partner cannot fill the disk
#: (or the inbox) faster than someone can answer. Refused (409) beyond it, not retried.
MAX_PENDING = 200


def _row(db: store.DB, where: str, params: list[Any]) -> list[dict[str, Any]]:
    cur = db.execute(f"SELECT * FROM proposals WHERE {where} ORDER BY created, rowid", params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _view(row: dict[str, Any], me: str) -> dict[str, Any]:
    doc = json.loads(row["doc"])
    outcome = json.loads(row["outcome_doc"]) if row["outcome_doc"] else None
    return {"id": row["id"], "direction": "sent" if row["sender"] == me else "received",
            "from": row["sender"], "to": row["recipient"], "about": row["about"],
            "as": doc["as"], "person": doc["person"], "reason": doc["reason"], "note": doc["note"],
            "state": row["state"], "refusal": row["refusal"], "created": row["created"],
            "decided": row["decided"], "outcome_reason": outcome["reason"] if outcome else None,
            "delivered": bool(row["delivered"] if row["sender"] == me else row["outcome_delivered"])}


# --- the proposer (B) ------------------------------------------------------------------------


def prepare(home: Home, target: str, *, as_profile: str | None, first_name: str = "", last_name: str = "",
            dob: str = "", reason: str = "", note: str = "") -> str:
    """Sign and keep a proposal to the origin of `target` (NODE_ID:PROFILE_ID); returns its hash.
    Delivered by peering.deliver_pending (now, by `propose`, or later by `serve`)."""
    origin, about = parse_ref(target)
    if origin == home.node_id:
        raise InvalidInput("that is one of this node's own profiles: use profile edit")
    peers.get(home.db, origin)
    require_active(home, origin, "proposals")
    reason, note = check_text(reason, "--reason", MAX_REASON), check_text(note, "--note", MAX_NOTE)
    if as_profile:
        if first_name or last_name or dob:
            raise InvalidInput("give --as MY_PROFILE_ID or a person's names, not both")
        mine = store.get_profile(home.db, check_profile_id(as_profile))
        if mine["origin"] != home.node_id:
            raise InvalidInput(f"--as must name one of this node's own profiles; {mine['id']} is another "
                               "partnership's")
        if mine["status"] != "identified":
            raise InvalidInput(f"profile {mine['id']} is ID-sought here too: it names no one to propose")
        person = {"first_name": mine["first_name"], "last_name": mine["last_name"], "dob": mine["dob"]}
    else:
        if not first_name.strip() or not last_name.strip():
            raise InvalidInput("give --as MY_PROFILE_ID, or --first-name and --last-name with --reason")
        person = {"first_name": check_text(first_name, "--first-name", 100), "last_name": check_text(last_name, "--last-name", 100),
                  "dob": profiles.normalise({"dob": dob})["dob"] if dob else None}
    doc = new_proposal(home.identity, origin, about, person, mine["id"] if as_profile else None, reason, note,
                       store.now_ts())
    digest = document_hash(doc)
    with store.write(home.db) as conn:
        conn.execute("INSERT INTO proposals (hash, id, sender, recipient, about, doc, state, delivered, created) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)",
                     [digest, doc["id"], home.node_id, origin, about, json.dumps(doc), PENDING, store.now_ts()])
        audit.append(home.db, "proposal-sent", origin, id=doc["id"], about=about, **{"as": as_profile or None})
    return digest


def by_hash(db: store.DB, me: str, digest: str) -> dict[str, Any]:
    rows = _row(db, "hash = ?", [digest])
    if not rows:
        raise NotFound("no such proposal")
    return _view(rows[0], me)


def receive_outcome(db: store.DB, me: str, peer: str, public_key: bytes, body: Any) -> dict[str, Any]:
    """The origin's signed outcome of a proposal we sent it."""
    doc = check_outcome(body, peer, me, public_key)
    rows = _row(db, "sender = ? AND recipient = ? AND id = ?", [me, peer, doc["proposal"]])
    if not rows or rows[0]["hash"] != doc["proposal_hash"]:
        raise NotFound("no such proposal was sent to you")
    row = rows[0]
    if row["state"] == doc["outcome"]:
        return {"id": row["id"], "state": row["state"]}  # a re-delivery
    if row["state"] != PENDING:
        raise Conflict(f"that proposal is already {row['state']}")
    sent = json.loads(row["doc"])
    with store.write(db) as conn:
        conn.execute("UPDATE proposals SET state = ?, outcome_hash = ?, outcome_doc = ?, outcome_delivered = 1, "
                     "decided = ? WHERE hash = ?",
                     [doc["outcome"], document_hash(doc), json.dumps(doc), store.now_ts(), row["hash"]])
        if doc["outcome"] == CONFIRMED and sent["as"]:
            links.record_confirmed(db, me, sent["as"]["id"], peer, sent["about"], f"proposal {row['id']}")
    return {"id": row["id"], "state": doc["outcome"]}


# --- the origin (A) --------------------------------------------------------------------------


def receive(db: store.DB, me: str, peer: str, public_key: bytes, body: Any) -> dict[str, Any]:
    """A partner's signed proposal. Refused unless `about` is our own profile, ID-sought, and
    shared with that partner now (the caller has checked the agreement is active)."""
    doc = check_proposal(body, peer, me, public_key)
    try:
        record = store.get_shareable(db, doc["about"], me, today(), peers.audience(db, me, peer, today()))
    except NotFound:
        raise NotFound(f"no shared profile {doc['about']}") from None
    if record["status"] != "id-sought":
        raise Conflict(f"profile {doc['about']} is not ID-sought")
    digest = document_hash(doc)
    held = _row(db, "sender = ? AND id = ?", [peer, doc["id"]])
    if held:
        if held[0]["hash"] != digest:
            raise Conflict("another proposal with that id was received")
        return {"id": doc["id"], "state": held[0]["state"]}  # a re-delivery
    waiting = db.execute("SELECT count(*) FROM proposals WHERE sender = ? AND recipient = ? AND state = ?",
                         [peer, me, PENDING]).fetchone()[0]
    if waiting >= MAX_PENDING:
        raise Conflict(f"{waiting} proposals from you already await an answer here; try again later")
    with store.write(db) as conn:
        conn.execute("INSERT INTO proposals (hash, id, sender, recipient, about, doc, state, delivered, created) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)",
                     [digest, doc["id"], peer, me, doc["about"], json.dumps(doc), PENDING, store.now_ts()])
    return {"id": doc["id"], "state": PENDING}


def _received(db: store.DB, me: str, proposal_id: str) -> dict[str, Any]:
    proposal_id = proposal_id.strip().lower()
    if len(proposal_id) != 16 or any(c not in "0123456789abcdef" for c in proposal_id):
        raise InvalidInput(f"{proposal_id[:40]!r} is not a proposal ID (16 hex digits)")
    rows = _row(db, "recipient = ? AND id = ?", [me, proposal_id])
    if not rows:
        raise NotFound(f"no proposal {proposal_id} was received")
    if len(rows) > 1:  # two partners chose the same random id: 1 in 2**64
        raise Conflict(f"two proposals have id {proposal_id}")
    return rows[0]


def hash_of(db: store.DB, me: str, proposal_id: str) -> str:
    return str(_received(db, me, proposal_id)["hash"])


def decide(home: Home, proposal_id: str, confirm: bool, reason: str = "", first_name: str = "",
           last_name: str = "") -> dict[str, Any]:
    """Confirm (the profile becomes identified with the proposal's names, or those typed here) or
    decline a received proposal; sign the outcome for the proposer. One transaction."""
    row = _received(home.db, home.node_id, proposal_id)
    reason = check_text(reason, "--reason", MAX_REASON)
    if not confirm and not reason:
        raise InvalidInput("declining needs a --reason (the proposer is told it)")
    if row["state"] != PENDING:
        raise Conflict(f"proposal {row['id']} is already {row['state']}")
    require_active(home, row["sender"], "answer to its proposals")
    doc = json.loads(row["doc"])
    outcome = new_outcome(home.identity, doc, row["hash"], CONFIRMED if confirm else DECLINED, reason,
                          store.now_ts())
    with store.write(home.db) as conn:
        if confirm:
            person = doc["person"]
            profiles.identify(home, row["about"], first_name=check_text(first_name, "--first-name", 100) or person["first_name"],
                              last_name=check_text(last_name, "--last-name", 100) or person["last_name"],
                              dob=person["dob"] if not (first_name or last_name) else None,
                              source="proposal", peer=row["sender"], reason=reason)
            if doc["as"]:  # the proposer named its own profile and we confirmed it: a same-person link
                links.record_confirmed(home.db, home.node_id, row["about"], row["sender"], doc["as"]["id"],
                                       f"proposal {row['id']}")
        conn.execute("UPDATE proposals SET state = ?, outcome_hash = ?, outcome_doc = ?, outcome_delivered = 0, "
                     "decided = ? WHERE hash = ?",
                     [outcome["outcome"], document_hash(outcome), json.dumps(outcome), store.now_ts(), row["hash"]])
        audit.append(home.db, f"proposal-{outcome['outcome']}", row["sender"], id=row["id"], about=row["about"],
                     reason=reason)
    return _view(_row(home.db, "hash = ?", [row["hash"]])[0], home.node_id)


# --- delivery (peering.deliver_pending) and lists --------------------------------------------


def undelivered(db: store.DB, me: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(hash, partner, document) for proposals we sent and outcomes we signed that their partner
    has not taken, only while the agreement with it is active."""
    out = [(r["hash"], r["recipient"], json.loads(r["doc"]))
           for r in _row(db, "sender = ? AND delivered = 0", [me])]
    out += [(r["outcome_hash"], r["sender"], json.loads(r["outcome_doc"]))
            for r in _row(db, "recipient = ? AND outcome_doc IS NOT NULL AND outcome_delivered = 0", [me])]
    return [(h, to, d) for h, to, d in out if peers.agreement(db, me, to, today()).active]


def mark_delivered(db: store.DB, digest: str, refusal: str | None) -> None:
    """The partner took the document, or refused it (`refusal`: final, recorded with its reason)."""
    with store.write(db) as conn:
        if refusal is None:
            conn.execute("UPDATE proposals SET delivered = 1 WHERE hash = ?", [digest])
        else:
            conn.execute("UPDATE proposals SET delivered = 1, state = ?, refusal = ? WHERE hash = ?",
                         [REFUSED, refusal[:500], digest])
        conn.execute("UPDATE proposals SET outcome_delivered = 1 WHERE outcome_hash = ?", [digest])


def pending_received(db: store.DB, me: str) -> list[dict[str, Any]]:
    """Proposals waiting for our administrator, from partners we still have an agreement with."""
    return [_view(r, me) for r in _row(db, "recipient = ? AND state = ?", [me, PENDING])
            if peers.agreement(db, me, r["sender"], today()).active]


def listing(db: store.DB, me: str) -> list[dict[str, Any]]:
    return [_view(r, me) for r in _row(db, "1", [])]
