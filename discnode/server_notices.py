"""The peer API's route for erasure and rectification notices (spec section 8.8): a partner's
notice about one of its own records, answered with this node's signed receipt. Registered on the
app by server.create_app; the work is notices.receive's, on the writer thread."""

from __future__ import annotations

from aiohttp import web

from . import notices
from .server import PEER, STATE, _json_body, _signer_key, note

PATH = "/v1/notices"


async def receive_notice(request: web.Request) -> web.Response:
    """Unlike other documents, taken from a partner whose agreement has ended too (it may hold this
    node's records no longer, but this node may hold its records still): notices.receive requires
    only that an agreement was once in force."""
    state = request.app[STATE]
    peer = request[PEER]
    doc = _json_body(request)
    # The pinned key, or a former one valid when the notice was signed (spec 4.6).
    key = await state.sql.read(lambda db: _signer_key(db, peer, doc))
    got = await state.sql.write(lambda db: notices.receive(db, state.home.identity, peer, key, doc))
    receipt = got.receipt
    if not got.again:
        state.notice_taken(peer)
    note(request, "notice-received", id=receipt["notice"], about=receipt["about"]["id"], kind=receipt["kind"],
         dropped=receipt["dropped"], files=receipt["files"], again=got.again)
    return web.json_response(receipt)


def register(app: web.Application) -> None:
    app.router.add_post(PATH, receive_notice)
