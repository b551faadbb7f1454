"""Sightings (spec section 8.5): "the person in your profile X was seen at PLACE on DATE", from a
partner the profile is shared with. Pure: build, sign and check; sightings.py stores them."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from .. import PROTOCOL_VERSION, schemas
from ..errors import InvalidInput, Unauthenticated
from ..identity import Identity
from ..signing import sign_document, verify_document

#: How far the receiver's clock may be behind the sender's for a sighting dated "today".
FUTURE_SLACK = dt.timedelta(days=1)


def new_sighting(identity: Identity, to: str, about: str, at: str, when: str, issued_at: str,
                 sighting_id: str | None = None) -> dict[str, Any]:
    doc = sign_document({"type": "sighting", "v": PROTOCOL_VERSION, "id": sighting_id or secrets.token_hex(8),
                         "from": identity.node_id, "to": to, "about": about, "at": at, "when": when,
                         "issued_at": issued_at}, identity)
    schemas.validate("sighting", doc)
    _rules(doc)
    return doc


def _rules(doc: dict[str, Any]) -> None:
    if doc["from"] == doc["to"]:
        raise InvalidInput("a node cannot report a sighting to itself")
    issued = dt.date.fromisoformat(doc["issued_at"][:10])
    if dt.date.fromisoformat(doc["when"]) > issued + FUTURE_SLACK:
        raise InvalidInput("a sighting cannot be dated after it was signed")


def check_sighting(doc: Any, signer: str, me: str, public_key: bytes) -> dict[str, Any]:
    """A well-formed sighting from `signer` to this node, signed by it; InvalidInput or Unauthenticated."""
    schemas.validate("sighting", doc)
    if doc["from"] != signer:
        raise Unauthenticated("a sighting may only be sent by the node that signed it")
    if doc["to"] != me:
        raise InvalidInput("the sighting is addressed to another node")
    _rules(doc)
    verify_document(doc, public_key)
    return dict(doc)
