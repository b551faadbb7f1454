"""Who may use the web Dataview, and what a browser may do with it.

The UI listens on 127.0.0.1 only, but any web page the administrator visits can make their browser
send requests there, so loopback is not enough:
- login: `discnode ui` asks the daemon (over its 0600 Unix socket) for a one-time token, valid for
  a few minutes; opening the URL that carries it trades it for a session cookie (HttpOnly,
  SameSite=Strict) and a redirect that drops the token from the address bar;
- DNS rebinding: a request whose Host is not this UI's own address is refused before anything else;
- CSRF: every form carries the session's token, checked on every POST together with Origin;
- a strict Content-Security-Policy: no script at all, images and styles from this origin only.
Sessions and tokens live in the daemon's memory: a restart logs everyone out, which is the point.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from aiohttp import web

TOKEN_SECONDS = 300
SESSION_SECONDS = 8 * 3600
COOKIE = "discnode_ui"
CSP = ("default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer Chromium sends "Origin: null" on our own forms.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
#: Paths served without a session: the login itself and the style sheet of its error page.
PUBLIC = ("/login", "/static/")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass
class Session:
    csrf: str
    expires: float
    #: The named account this session acts as (`discnode ui --as NAME`): what audit entries name.
    account: str = ""


@dataclass
class Sessions:
    """One-time login tokens and the sessions they open, by SHA-256 of the secret (so that the
    secrets themselves are not in memory longer than the request that carries them)."""

    tokens: dict[str, tuple[float, str]] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic

    def new_token(self, account: str) -> str:
        """A one-time token whose session acts as `account`."""
        now = self.clock()
        self.tokens = {t: (exp, who) for t, (exp, who) in self.tokens.items() if exp > now}
        token = secrets.token_urlsafe(32)
        self.tokens[_digest(token)] = (now + TOKEN_SECONDS, account)
        return token

    def login(self, token: str) -> tuple[str, Session] | None:
        """A new session for a valid, unused token (which is used up), else None."""
        issued = self.tokens.pop(_digest(token), None)
        now = self.clock()
        if issued is None or issued[0] < now:
            return None
        self.sessions = {k: s for k, s in self.sessions.items() if s.expires > now}
        session_id = secrets.token_urlsafe(32)
        session = self.sessions[_digest(session_id)] = Session(secrets.token_urlsafe(32), now + SESSION_SECONDS,
                                                               issued[1])
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self.sessions.get(_digest(session_id))
        if session is None or session.expires < self.clock():
            return None
        return session

    def logout(self, session_id: str) -> None:
        self.sessions.pop(_digest(session_id), None)


SESSIONS = web.AppKey("sessions", Sessions)
ORIGIN = web.AppKey("origin", str)            # http://127.0.0.1:PORT, set once the port is bound
SESSION = web.RequestKey("session", Session)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _refuse(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=text + "\n", content_type="text/plain", headers=HEADERS)


@web.middleware
async def host_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """DNS rebinding: a hostile name resolving to 127.0.0.1 still sends its own name as Host."""
    expected = request.app[ORIGIN].removeprefix("http://")
    if request.host != expected:
        return _refuse(421, f"This is the discnode Dataview at {expected}; requests for another host are refused.")
    return await handler(request)


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(HEADERS)
        raise
    response.headers.update(HEADERS)
    if not request.path.startswith("/static/") and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


@web.middleware
async def require_session(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(PUBLIC):
        return await handler(request)
    session = request.app[SESSIONS].get(request.cookies.get(COOKIE))
    if session is None:
        return _refuse(401, "Not logged in. Run `discnode ui` on the node's machine and open the URL it prints.")
    if request.method not in ("GET", "HEAD"):
        origin = request.headers.get("Origin")
        if origin is not None and origin != request.app[ORIGIN]:
            return _refuse(403, "Refused: this form was sent from another site.")
        form = await request.post()
        sent = form.get("csrf")
        if not isinstance(sent, str) or not hmac.compare_digest(sent, session.csrf):
            return _refuse(403, "Refused: the form's security token is missing or stale; reload the page.")
    request[SESSION] = session
    from ..audit import acting
    with acting(f"web:{session.account}"):  # this request's task (and threads it starts) only
        return await handler(request)


async def login(request: web.Request) -> web.StreamResponse:
    opened = request.app[SESSIONS].login(request.query.get("token", ""))
    if opened is None:
        return _refuse(401, "This login link is invalid, used or expired. Run `discnode ui` for a new one.")
    session_id, _ = opened
    response = web.Response(status=303, headers={"Location": "/dataview"})
    response.set_cookie(COOKIE, session_id, httponly=True, samesite="Strict", path="/", max_age=SESSION_SECONDS)
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    request.app[SESSIONS].logout(request.cookies.get(COOKIE, ""))
    response = web.Response(status=303, headers={"Location": "/login"})
    response.del_cookie(COOKIE, path="/")
    return response
