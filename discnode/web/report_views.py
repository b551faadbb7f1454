"""The web report: `/report` (charts and tables) and its `.json` twin, over the same library call
as `discnode report` (report.gather). Charts are files of their own (`/report/chart/NAME.svg` or
`.png`), shown with <img>: the page keeps its strict CSP (no script, images from this origin), and
an SVG shown as an image runs nothing.

A report walks the whole Dataview, so the page's charts reuse the report the page was built from
(kept REUSE_SECONDS, per period) rather than asking every partner again for each picture."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from .. import audit, report
from ..home import today
from ..localapi import LOCAL, Local
from .views import EXT, render

REUSE_SECONDS = 60.0
_CACHE = "report"


def _period(request: web.Request) -> report.Period:
    q = request.query
    weeks = q.get("weeks", "").strip()
    if weeks and not weeks.isdigit():
        from ..errors import InvalidInput
        raise InvalidInput("weeks must be a whole number")
    return report.Period.choose(today(), q.get("since", "").strip() or None, q.get("until", "").strip() or None,
                                int(weeks) if weeks else None)


async def _report(local: Local, period: report.Period, *, fresh: bool) -> dict[str, Any]:
    kept = local.cache.get(_CACHE)
    if not fresh and kept and kept[0] == period and time.monotonic() - kept[1] < REUSE_SECONDS:
        return kept[2]
    data = await report.gather(local.home, period, timeout=local.timeout, client=local.client)
    audit.append(local.home.db, "report", "", period=data["period"], profiles=data["profiles_looked_at"],
                 incidents=data["incidents"]["count"], peers={s["node_id"]: s["status"] for s in data["sources"]},
                 via="web")
    local.cache[_CACHE] = (period, time.monotonic(), data)
    return data


def _query(period: report.Period) -> str:
    return f"?since={period.since.isoformat()}&until={period.until.isoformat()}"


async def page(request: web.Request) -> web.Response:
    period = _period(request)
    data = await _report(request.app[LOCAL], period, fresh=True)
    charts = [{"name": n, "svg": f"/report/chart/{n}.svg{_query(period)}", "png": f"/report/chart/{n}.png{_query(period)}"}
              for n in report.CHARTS]
    return render(request, "report.html", {**data, "charts": charts, "form": {k: request.query.get(k, "")
                                                                               for k in ("weeks", "since", "until")}})


async def chart(request: web.Request) -> web.Response:
    name, fmt = request.match_info["name"], request.match_info["fmt"]
    data = await _report(request.app[LOCAL], _period(request), fresh=False)
    body = await asyncio.to_thread(report.chart_bytes, data, name, fmt)
    return web.Response(body=body, content_type="image/svg+xml" if fmt == "svg" else "image/png",
                        headers={"Cache-Control": "private, no-store"})


def add_routes(app: web.Application) -> None:
    app.router.add_get(f"/report{EXT}", page)
    names = "|".join(report.CHARTS)
    app.router.add_get(f"/report/chart/{{name:{names}}}.{{fmt:svg|png}}", chart)
