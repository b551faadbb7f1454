"""The web Dataview: server-rendered pages (jinja2, autoescaped) over the same library functions as
the command line, each with a `.json` twin. No JavaScript: everything works with it off.

Imported by the daemon only when `discnode ui` first asks for it (localapi.UI.start).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from ..localapi import LOCAL, Local
from . import security, views


def create_app(local: Local, origin: str) -> web.Application:
    app = web.Application(middlewares=[security.security_headers, security.host_guard, security.require_session,
                                       views.errors], client_max_size=views.MAX_FORM)
    app[LOCAL] = local
    app[security.SESSIONS] = security.Sessions()
    app[security.ORIGIN] = origin
    app.router.add_get("/login", security.login)
    app.router.add_post("/logout", security.logout)
    app.router.add_static("/static/", Path(__file__).parent / "static", append_version=False)
    views.add_routes(app)
    return app
