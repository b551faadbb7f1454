"""Erasure and rectification notices, and their receipts (spec section 8.8): "the record of mine
you received is erased / corrected", from a profile's origin to every partner that received it
(UK GDPR Art 19), and the partner's signed answer saying what it dropped. Pure: build, sign and
check; notices.py stores them and acts on them."""

from __future__ import annotations

import secrets
from typing import Any, Mapping

from .. import PROTOCOL_VERSION, schemas
from ..errors import InvalidInput, Refused, Unauthenticated
from ..identity import Identity
from ..signing import sign_document, verify_document

ERASURE = "erasure"
RECTIFICATION = "rectification"
KINDS = (ERASURE, RECTIFICATION)
#: What a receipt counts as dropped: the receiver's own copies and notes of the record.
DROPPED = ("checked", "links", "sightings", "revealed")


def new_notice(identity: Identity, to: str, about: str, kind: str, revision: int, issued_at: str,
               notice_id: str | None = None) -> dict[str, Any]:
    """A signed notice about this node's own profile `about`, now at `revision` (for an erasure,
    the last revision it had)."""
    if kind not in KINDS:
        raise InvalidInput(f"a notice is one of: {', '.join(KINDS)}")
    if to == identity.node_id:
        raise InvalidInput("a node sends notices to its partners, not to itself")
    doc = sign_document({"type": "notice", "v": PROTOCOL_VERSION, "id": notice_id or secrets.token_hex(8),
                         "from": identity.node_id, "to": to, "about": {"origin": identity.node_id, "id": about},
                         "kind": kind, "revision": revision, "issued_at": issued_at}, identity)
    schemas.validate("notice", doc)
    return doc


def check_notice(doc: Any, signer: str, me: str, public_key: bytes) -> dict[str, Any]:
    """A well-formed notice from `signer` to this node about one of the signer's own records,
    signed by it: InvalidInput (400), Unauthenticated (401) or Refused (403) otherwise."""
    schemas.validate("notice", doc)
    if doc["from"] != signer:
        raise Unauthenticated("a notice may only be sent by the node that signed it")
    if doc["to"] != me:
        raise InvalidInput("the notice is addressed to another node")
    if doc["about"]["origin"] != doc["from"]:
        raise Refused("a node may only send notices about its own records (about.origin must be from)")
    verify_document(doc, public_key)
    return dict(doc)


def new_receipt(identity: Identity, notice: Mapping[str, Any], notice_hash: str, dropped: Mapping[str, int],
                files: int, issued_at: str) -> dict[str, Any]:
    doc = sign_document({"type": "receipt", "v": PROTOCOL_VERSION, "from": identity.node_id, "to": notice["from"],
                         "notice": notice["id"], "notice_hash": notice_hash, "about": dict(notice["about"]),
                         "kind": notice["kind"], "dropped": {k: int(dropped.get(k, 0)) for k in DROPPED},
                         "files": files, "issued_at": issued_at}, identity)
    schemas.validate("receipt", doc)
    return doc


def check_receipt(doc: Any, signer: str, me: str, public_key: bytes, notice: Mapping[str, Any],
                  notice_hash: str) -> dict[str, Any]:
    """The receipt `signer` signed for `notice` (which this node sent it): InvalidInput or
    Unauthenticated otherwise."""
    schemas.validate("receipt", doc)
    if doc["from"] != signer or notice["to"] != signer:
        raise Unauthenticated("a receipt may only come from the node the notice was sent to")
    if doc["to"] != me:
        raise InvalidInput("the receipt is addressed to another node")
    if (doc["notice"], doc["notice_hash"], doc["about"], doc["kind"]) != (
            notice["id"], notice_hash, notice["about"], notice["kind"]):
        raise InvalidInput("the receipt is not for this notice")
    verify_document(doc, public_key)
    return dict(doc)
