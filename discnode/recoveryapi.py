"""`GET /v1/recovery` (spec section 9.7): what this node holds of its time with the asking node,
for that node to re-apply after it was restored from an older backup.

Served to any node with a pinned key (an agreement, past or present): a revoked partner is the one
that most needs to learn of its revocation again. Only documents between the two nodes, and only
heads of the asker's own log, and the asker's own notices with this node's receipts, ever leave:
nothing the asker did not sign or was not sent.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import notices, peers, store, witness

PATH = "/v1/recovery"


def held_for(db: store.DB, peer: str) -> dict[str, Any]:
    """Every consent document between this node and `peer` (offers, answers, revocations, both
    directions), every head of `peer`'s log this node witnessed, and every erasure or
    rectification notice `peer` sent this node with the receipt this node returned."""
    return {"consent": peers.documents(db, peer), "audit_heads": witness.held_for(db, peer),
            "notices": notices.held_for(db, peer)}


async def recovery(request: web.Request) -> web.Response:
    from .errors import Refused
    from .server import PEER, STATE, note
    state = request.app[STATE]
    peer = request[PEER]

    def read(db: store.DB) -> dict[str, Any] | None:
        if peers.public_key(db, peer) is None:
            return None
        return held_for(db, peer)

    held = await state.sql.read(read)
    if held is None:  # only the first offer's own key is accepted unpinned, and not on this path
        raise Refused(f"no agreement with node {peer}")
    note(request, "served", what="recovery", consent=len(held["consent"]),
         heads=len(held["audit_heads"]["heads"]) + len(held["audit_heads"]["evidence"]), notices=len(held["notices"]))
    return web.json_response(held)


def register(app: web.Application) -> None:
    app.router.add_get(PATH, recovery)
