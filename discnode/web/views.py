"""The web Dataview's handlers: read the request, call pages.py, render a template or its `.json` twin.

Forms post back and redirect (303) to the page that shows the result, so a reload never repeats an
action. A DiscnodeError becomes the page's error message with its status; nothing half-done.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

import jinja2
from aiohttp import web

from ..errors import DiscnodeError
from ..localapi import LOCAL, Local
from . import pages
from .security import SESSION

ENV = jinja2.Environment(loader=jinja2.PackageLoader("discnode.web", "templates"), autoescape=True,
                         undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

#: Uploaded photos: as the CLI's limit (images.MAX_BYTES) plus the form around it.
MAX_FORM = 11 * 1024 * 1024


def _local(request: web.Request) -> Local:
    return request.app[LOCAL]


def render(request: web.Request, template: str, data: dict[str, Any], status: int = 200) -> web.Response:
    """HTML, or with a `.json` path the same data as JSON."""
    if request.match_info.get("ext") == ".json":
        return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))
    session = request.get(SESSION)
    html = ENV.get_template(template).render(**data, csrf=session.csrf if session else "",
                                             path=request.path, node_name=_local(request).home.config.name)
    return web.Response(text=html, content_type="text/html", status=status)


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


@web.middleware
async def errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> web.StreamResponse:
    try:
        return await handler(request)
    except DiscnodeError as exc:
        return render(request, "error.html", {"error": {"code": exc.code, "message": str(exc)}}, exc.status)


async def index(request: web.Request) -> web.Response:
    return see_other("/dataview")


async def dataview(request: web.Request) -> web.Response:
    return render(request, "dataview.html", await pages.dataview(_local(request), request.query))


async def profile(request: web.Request) -> web.Response:
    m = request.match_info
    return render(request, "profile.html", await pages.profile(_local(request), m["origin"], m["id"]))


async def thumb(request: web.Request) -> web.Response:
    return await _image(request, thumb=True)


async def image(request: web.Request) -> web.Response:
    return await _image(request, thumb=False)


async def _image(request: web.Request, *, thumb: bool) -> web.Response:
    m = request.match_info
    data = await pages.image_bytes(_local(request), m["origin"], m["sha"], thumb=thumb)
    # Content-addressed: the same URL is always the same picture.
    return web.Response(body=data, content_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=86400, immutable"})


async def mine(request: web.Request) -> web.Response:
    return render(request, "mine.html", pages.mine(_local(request), request.query))


async def new_profile(request: web.Request) -> web.Response:
    return render(request, "profile_form.html", pages.profile_form(_local(request), None))


async def edit_form(request: web.Request) -> web.Response:
    return render(request, "profile_form.html", pages.profile_form(_local(request), request.match_info["id"]))


async def _form_fields(request: web.Request) -> tuple[dict[str, Any], bytes | None]:
    form = await request.post()
    tags = [t for t in form.getall("tags", []) if isinstance(t, str)]
    upload = form.get("image")
    data = None
    if isinstance(upload, web.FileField) and upload.filename:
        data = upload.file.read()
    return pages.fields_from_form(form, tags), data


async def create_profile(request: web.Request) -> web.Response:
    fields, data = await _form_fields(request)
    record = pages.add_profile(_local(request), fields, data)
    return see_other(f"/profile/{record['origin']}/{record['id']}")


async def save_profile(request: web.Request) -> web.Response:
    fields, data = await _form_fields(request)
    if data:  # refused here, before the edit is written, if it is not a photo the profile can take
        from .. import store
        from ..errors import Conflict
        from ..images import process
        sha = process(data).sha256
        if sha in (i["sha256"] for i in store.images_of(_local(request).home.db, request.match_info["id"])):
            raise Conflict("the profile already has that photo")
    record = pages.edit_profile(_local(request), request.match_info["id"], fields)
    if data:
        record = pages.add_photo(_local(request), record["id"], data)
    return see_other(f"/profile/{record['origin']}/{record['id']}")


async def review(request: web.Request) -> web.Response:
    pages.review_profile(_local(request), request.match_info["id"])
    return see_other("/mine")


async def confirm_delete(request: web.Request) -> web.Response:
    local = _local(request)
    data = await pages.profile(local, local.home.node_id, request.match_info["id"])
    return render(request, "confirm.html", {"title": "Delete this profile?", "action": request.path,
                                            "what": data["profile"], "button": "Delete it and its photos",
                                            "back": "/mine"})


async def delete(request: web.Request) -> web.Response:
    from .. import profiles
    profiles.delete(_local(request).home, request.match_info["id"])
    return see_other("/mine")


async def partners(request: web.Request) -> web.Response:
    offered = request.query.get("offered")
    return render(request, "partners.html", pages.partners(_local(request), offered=offered))


async def offer(request: web.Request) -> web.Response:
    """The offer form: on an error the page comes back with what was typed and the reason beside the
    form (nothing stored: add_peer checks the node before it writes anything)."""
    local = _local(request)
    form = await request.post()
    typed = pages.OfferForm.blank()
    try:
        typed = pages.OfferForm.from_post(form, form.getall("share", []), form.getall("handling_condition", []))
        result = await pages.make_offer(local, typed)
    except DiscnodeError as exc:
        return render(request, "partners.html", pages.partners(local, typed, str(exc)), exc.status)
    return see_other(f"/partners?offered={result['node_id']}")


async def respond(request: web.Request) -> web.Response:
    m = request.match_info
    await pages.respond(_local(request), m["node_id"], m["action"])
    return see_other("/partners")


async def confirm_revoke(request: web.Request) -> web.Response:
    row = pages.partner(_local(request), request.match_info["node_id"])
    return render(request, "confirm.html", {"title": f"Stop sharing with {row['name']}?", "action": request.path,
                                            "what": row, "button": "Revoke the agreement now",
                                            "back": "/partners"})


async def audit_log(request: web.Request) -> web.Response:
    return render(request, "audit.html", pages.audit_log(_local(request), request.query))


async def inbox(request: web.Request) -> web.Response:
    return render(request, "inbox.html", pages.inbox(_local(request)))


async def decide_proposal(request: web.Request) -> web.Response:
    form = await request.post()
    reason = form.get("reason", "")
    m = request.match_info
    await pages.decide_proposal(_local(request), m["id"], m["action"], reason if isinstance(reason, str) else "")
    return see_other("/inbox")


NODE = r"{%s:[A-Za-z2-7-]{20,40}}"
ID = r"{id:[a-z2-7]{12}}"
EXT = r"{ext:(\.json)?}"


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", index)
    r.add_get(f"/dataview{EXT}", dataview)
    r.add_get(f"/profile/{NODE % 'origin'}/{ID}{EXT}", profile)
    r.add_get(f"/thumb/{NODE % 'origin'}/{{sha:[0-9a-f]{{64}}}}", thumb)
    r.add_get(f"/image/{NODE % 'origin'}/{{sha:[0-9a-f]{{64}}}}", image)
    r.add_get(f"/mine{EXT}", mine)
    r.add_get("/mine/new", new_profile)
    r.add_post("/mine/new", create_profile)
    r.add_get(f"/mine/{ID}/edit", edit_form)
    r.add_post(f"/mine/{ID}/edit", save_profile)
    r.add_post(f"/mine/{ID}/review", review)
    r.add_get(f"/mine/{ID}/delete", confirm_delete)
    r.add_post(f"/mine/{ID}/delete", delete)
    r.add_get(f"/partners{EXT}", partners)
    r.add_post("/partners/offer", offer)
    r.add_get(f"/partners/{NODE % 'node_id'}/revoke", confirm_revoke)
    r.add_post(f"/partners/{NODE % 'node_id'}/{{action:accept|reject|revoke}}", respond)
    r.add_get(f"/audit{EXT}", audit_log)
    r.add_get(f"/inbox{EXT}", inbox)
    r.add_post("/inbox/proposal/{id:[0-9a-f]{16}}/{action:confirm|decline}", decide_proposal)
    from . import report_views  # noqa: PLC0415 - it imports this module
    report_views.add_routes(app)
