"""Same-person links (spec section 8.6): "my profile P and your profile Q are one person", and the
partner's signed answer. Pure: build, sign and check; links.py stores them."""

from __future__ import annotations

import secrets
from typing import Any, Mapping

from .. import PROTOCOL_VERSION, schemas
from ..errors import InvalidInput, Unauthenticated
from ..identity import Identity
from ..signing import sign_document, verify_document

CONFIRMED = "confirmed"
DECLINED = "declined"


def new_link(identity: Identity, to: str, mine: str, yours: str, issued_at: str,
             link_id: str | None = None) -> dict[str, Any]:
    if to == identity.node_id:
        raise InvalidInput("a link joins this node's profile to a partner's")
    doc = sign_document({"type": "link", "v": PROTOCOL_VERSION, "id": link_id or secrets.token_hex(8),
                         "from": identity.node_id, "to": to, "mine": mine, "yours": yours,
                         "issued_at": issued_at}, identity)
    schemas.validate("link", doc)
    return doc


def new_answer(identity: Identity, link: Mapping[str, Any], link_hash: str, answer: str, issued_at: str
               ) -> dict[str, Any]:
    if answer not in (CONFIRMED, DECLINED):
        raise InvalidInput(f"a link is {CONFIRMED} or {DECLINED}")
    doc = sign_document({"type": "link-answer", "v": PROTOCOL_VERSION, "from": identity.node_id,
                         "to": link["from"], "link": link["id"], "link_hash": link_hash, "answer": answer,
                         "issued_at": issued_at}, identity)
    schemas.validate("link-answer", doc)
    return doc


def check(doc: Any, kind: str, signer: str, me: str, public_key: bytes) -> dict[str, Any]:
    """A well-formed `kind` (link or link-answer) from `signer` to this node, signed by it."""
    schemas.validate(kind, doc)
    if doc["from"] != signer:
        raise Unauthenticated(f"a {kind} may only be sent by the node that signed it")
    if doc["to"] != me:
        raise InvalidInput(f"the {kind} is addressed to another node")
    verify_document(doc, public_key)
    return dict(doc)
