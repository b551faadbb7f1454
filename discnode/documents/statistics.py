"""Statistics replies (spec section 8.7): a node's released counts of its own incidents, signed,
for a partner whose agreement shares `statistics`. Pure: build, sign and check; statistics.py
counts, the server and statsask.py carry them."""

from __future__ import annotations

from typing import Any

from .. import PROTOCOL_VERSION, schemas
from ..errors import InvalidInput, Unauthenticated
from ..identity import Identity
from ..signing import sign_document, verify_document
from ..statistics import Tables, Window


def new_statistics(identity: Identity, to: str, window: Window, tables: Tables, issued_at: str) -> dict[str, Any]:
    doc = sign_document({"type": "statistics", "v": PROTOCOL_VERSION, "from": identity.node_id, "to": to,
                         "issued_at": issued_at, "window": window.to_wire(), **tables.to_wire()}, identity)
    schemas.validate("statistics", doc)
    return doc


def check_statistics(doc: Any, signer: str, me: str, public_key: bytes) -> Tables:
    """The tables of a well-formed statistics reply from `signer` to this node, signed by it, whose
    tables are one release (each adds up to the total; no count under 5); else InvalidInput or
    Unauthenticated."""
    schemas.validate("statistics", doc)
    if doc["from"] != signer:
        raise Unauthenticated("a statistics reply may only come from the node that signed it")
    if doc["to"] != me:
        raise InvalidInput("the statistics reply is addressed to another node")
    verify_document(doc, public_key)
    tables = Tables.from_wire(doc)
    wrong = tables.inconsistency()
    if wrong:
        raise InvalidInput(f"statistics reply is not one release of counts: {wrong}")
    return tables
