"""`POST /v1/statistics` (spec section 8.7): released counts of this node's own incidents, signed,
for a partner whose active agreement shares `statistics`; 403 to everyone else (a profiles
partner included: counts are their own scope). Audited like every request (`served`,
`what: statistics`, the released total)."""

from __future__ import annotations

from aiohttp import web

from . import schemas, store
from .documents.statistics import new_statistics
from .home import today
from .server import STATE, _json_body, _require, note
from .statistics import Window, own_incidents, release

PATH = "/v1/statistics"


async def statistics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    peer = await _require(request, "statistics")
    schemas.validate("statistics-request", _json_body(request))
    day = today()
    window = Window.ending_before(day)
    incidents = await state.sql.read(lambda db: own_incidents(db, state.me, day, window))
    tables = release(incidents, window)
    doc = new_statistics(state.home.identity, peer, window, tables, store.now_ts())
    note(request, "served", what="statistics", count=tables.total)
    return web.json_response(doc)


def register(app: web.Application) -> None:
    app.router.add_post(PATH, statistics)
