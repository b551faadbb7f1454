"""`POST /v1/statistics` (spec section 8.7): released counts of this node's own incidents, signed,
for a partner whose active agreement shares `statistics`; 403 to everyone else (a profiles
partner included: counts are their own scope). Audited like every request (`served`,
`what: statistics`, the released total).

The release is computed once, not per request: it depends only on the records counted and on the
window (the complete ISO weeks before this one), so it is kept, keyed by the window and by a
fingerprint of exactly the rows `own_incidents` reads (statistics.own_version: each row's ID,
revision and content hash), and computed again when either changes. Each reply is still signed
for its asker, at its own time, and audited."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from aiohttp import web

from . import schemas, store
from .documents.statistics import new_statistics
from .home import today
from .server import STATE, _json_body, _require, note
from .statistics import Tables, Window, own_incidents, own_version, release

PATH = "/v1/statistics"


@dataclass
class ReleaseCache:
    """The node's last release and what it was computed from (one per node: one per app)."""

    # One attribute, replaced whole: readers on several database threads may fill it at once.
    entry: tuple[tuple[str, str, str], Tables] | None = None


CACHE = web.AppKey("statistics_release", ReleaseCache)


def current_release(db: object, me: str, day: dt.date, cache: ReleaseCache) -> tuple[Window, Tables]:
    """The release for `day`: the cached one while the window and the counted rows are unchanged,
    else computed afresh (and kept). The fingerprint is read before the rows: a write between the
    two leaves newer tables under an older key, which the next request recomputes; never older
    tables under a newer key."""
    window = Window.ending_before(day)
    key = (window.first.isoformat(), window.last.isoformat(), own_version(db, me, day))
    entry = cache.entry
    if entry is not None and entry[0] == key:
        return window, entry[1]
    tables = release(own_incidents(db, me, day, window), window)
    cache.entry = (key, tables)
    return window, tables


async def statistics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    peer = await _require(request, "statistics")
    schemas.validate("statistics-request", _json_body(request))
    day = today()
    cache = request.app[CACHE]
    window, tables = await state.sql.read(lambda db: current_release(db, state.me, day, cache))
    doc = new_statistics(state.home.identity, peer, window, tables, store.now_ts())
    note(request, "served", what="statistics", count=tables.total)
    return web.json_response(doc)


def register(app: web.Application) -> None:
    app[CACHE] = ReleaseCache()
    app.router.add_post(PATH, statistics)
