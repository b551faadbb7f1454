"""Proposals (spec section 8.4): "your ID-sought profile X is, we believe, this person", and the
origin's signed outcome. Pure: build, sign and check; proposals.py stores and acts on them."""

from __future__ import annotations

import secrets
from typing import Any, Mapping

from .. import PROTOCOL_VERSION, schemas
from ..errors import InvalidInput, Unauthenticated
from ..identity import Identity
from ..signing import sign_document, verify_document

CONFIRMED = "confirmed"
DECLINED = "declined"


def new_proposal(identity: Identity, to: str, about: str, person: Mapping[str, Any], as_profile: str | None,
                 reason: str, note: str, issued_at: str, proposal_id: str | None = None) -> dict[str, Any]:
    """A signed proposal from identity's node; InvalidInput (nothing signed) if it is not well formed."""
    doc = {"type": "proposal", "v": PROTOCOL_VERSION, "id": proposal_id or secrets.token_hex(8),
           "from": identity.node_id, "to": to, "about": about,
           "as": {"origin": identity.node_id, "id": as_profile} if as_profile else None,
           "person": {"first_name": person["first_name"], "last_name": person["last_name"],
                      "dob": person.get("dob") or None},
           "reason": reason, "note": note, "issued_at": issued_at}
    _rules(doc)
    signed = sign_document(doc, identity)
    schemas.validate("proposal", signed)
    return signed


def _rules(doc: Mapping[str, Any]) -> None:
    """What the schema cannot say."""
    if doc["from"] == doc["to"]:
        raise InvalidInput("a node cannot propose to itself")
    if doc["as"] is not None and doc["as"]["origin"] != doc["from"]:
        raise InvalidInput("a proposal may only name its sender's own profile (as.origin must be from)")
    if doc["as"] is None and not doc["reason"].strip():
        raise InvalidInput("a proposal that names a person without a profile of the sender's must give a reason")


def check_proposal(doc: Any, signer: str, me: str, public_key: bytes) -> dict[str, Any]:
    """A well-formed proposal from `signer` to this node, signed by it; InvalidInput or Unauthenticated."""
    schemas.validate("proposal", doc)
    if doc["from"] != signer:
        raise Unauthenticated("a proposal may only be sent by the node that signed it")
    if doc["to"] != me:
        raise InvalidInput("the proposal is addressed to another node")
    _rules(doc)
    verify_document(doc, public_key)
    return dict(doc)


def new_outcome(identity: Identity, proposal: Mapping[str, Any], proposal_hash: str, outcome: str, reason: str,
                issued_at: str) -> dict[str, Any]:
    if outcome not in (CONFIRMED, DECLINED):
        raise InvalidInput(f"outcome must be {CONFIRMED} or {DECLINED}")
    signed = sign_document({"type": "proposal-outcome", "v": PROTOCOL_VERSION, "from": identity.node_id,
                            "to": proposal["from"], "proposal": proposal["id"], "proposal_hash": proposal_hash,
                            "outcome": outcome, "reason": reason, "issued_at": issued_at}, identity)
    schemas.validate("proposal-outcome", signed)
    return signed


def check_outcome(doc: Any, signer: str, me: str, public_key: bytes) -> dict[str, Any]:
    schemas.validate("proposal-outcome", doc)
    if doc["from"] != signer:
        raise Unauthenticated("a proposal outcome may only be sent by the node that signed it")
    if doc["to"] != me:
        raise InvalidInput("the proposal outcome is addressed to another node")
    verify_document(doc, public_key)
    return dict(doc)
