"""The running node's local API: a Unix socket in the node's home, for this machine's administrator.

`discnode serve` listens on HOME/daemon.sock (mode 0600, in a 0700 home; and each connection's
user is checked to be the daemon's own). Through it:
- `discnode ui` gets a one-time login URL for the web Dataview, which the daemon starts on
  127.0.0.1 only when first asked (jinja2 and the pages load then, not before);
- the command line forwards a command (fastpath.py) and prints what the daemon renders, so that
  `discnode search` runs with warm, pinned partner connections and compiled validators instead of
  starting Python's libraries cold.
The peer API never serves any of this: it is another listener, on another socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .client import PeerClient
from .home import Home
from .store import now_ts

log = logging.getLogger("discnode.localapi")

SOCKET_NAME = "daemon.sock"
DEFAULT_TIMEOUT = 3.0
#: Partners close idle connections after 15 s: refresh well within that...
KEEPALIVE_EVERY = 10.0
#: ...for this long after the last search (then a search pays one TLS handshake per partner)...
WARM_FOR = 600.0
#: ...on this many connections per partner (a web page asks each partner for a page and for counts).
WARM_CONNECTIONS = 2


def socket_path(home_path: Path) -> Path:
    return Path(home_path) / SOCKET_NAME


@dataclass
class Local:
    """What the local faces (web pages, forwarded commands) share in the daemon: the node, one
    warm peer client (its pinned connections reused across searches), and the web UI once started."""

    home: Home
    timeout: float = DEFAULT_TIMEOUT
    ui_port: int = 0
    _client: PeerClient | None = None
    ui: "UI | None" = None
    cache: dict[str, Any] = field(default_factory=dict)
    #: When the daemon started listening here (UTC, ISO), for `discnode status`.
    started: str = field(default_factory=now_ts)

    #: When the client was last used (monotonic seconds); keep-alive runs for WARM_FOR after it.
    last_used: float = float("-inf")
    _warmer: "asyncio.Task[None] | None" = None

    @property
    def client(self) -> PeerClient:
        if self._client is None:
            self._client = PeerClient(self.home.identity, timeout=self.timeout)
        self.last_used = time.monotonic()
        if self._warmer is None or self._warmer.done():
            self._warmer = asyncio.get_running_loop().create_task(self._keep_warm(), name="keep-partners-warm")
        return self._client

    def forget(self, origin: str) -> int:
        """Drop what the web pages cached of a partner's data (its images, and facet counts, which
        may count its records): called when the partner erases or corrects a record (notices.py).
        Returns how many entries went."""
        gone = [k for k in self.cache if isinstance(k, tuple) and (k[0] == "facets" or
                                                                    (len(k) == 3 and k[1] == origin))]
        for key in gone:
            del self.cache[key]
        return len(gone)

    async def _keep_warm(self) -> None:
        """While the administrator is at work (a search in the last WARM_FOR seconds), keep
        WARM_CONNECTIONS pinned connections open to each active partner by fetching its
        descriptor every KEEPALIVE_EVERY seconds, under the 15 s in which partners close idle
        ones. Descriptor fetches are not audited by partners, so this adds nothing to their logs;
        a daemon nobody uses sends nothing."""
        from .dataview import active_peers
        while time.monotonic() - self.last_used < WARM_FOR and self._client is not None:
            await asyncio.sleep(KEEPALIVE_EVERY)
            client = self._client
            if client is None:
                return
            try:
                targets = active_peers(self.home)
            except Exception:  # noqa: BLE001 - a database hiccup must not end the daemon
                log.exception("keep-alive: could not list partners")
                continue
            await asyncio.gather(*(client.keepalive(p) for p in targets for _ in range(WARM_CONNECTIONS)))

    async def start_ui(self) -> "UI":
        if self.ui is None:
            self.ui = await UI.start(self, self.ui_port)
        return self.ui

    async def close(self) -> None:
        if self._warmer is not None:
            self._warmer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._warmer
        if self.ui is not None:
            await self.ui.stop()
            self.ui = None
        if self._client is not None:
            await self._client.close()
            self._client = None


@dataclass
class UI:
    runner: web.AppRunner
    port: int
    app: web.Application

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    async def start(cls, local: Local, port: int = 0) -> "UI":
        from .web import create_app

        # Loopback only, always: the web Dataview is for the node's own machine. Bound first, so
        # that the app knows its own origin (the Host it accepts) before it serves anything.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        bound = sock.getsockname()[1]
        app = create_app(local, f"http://127.0.0.1:{bound}")
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        log.info("web Dataview on http://127.0.0.1:%d", bound)
        return cls(runner, bound, app)

    def login_url(self, account: str) -> str:
        """A one-time login URL whose session acts as `account` (named in the audit log)."""
        from .web.security import SESSIONS
        return f"{self.origin}/login?token={self.app[SESSIONS].new_token(account)}"

    async def stop(self) -> None:
        await self.runner.cleanup()


LOCAL = web.AppKey("local", Local)

#: The socket's protocol: one JSON line from the caller ({"op": ...}), then one JSON line back,
#: then (for "cli") the command's stderr and stdout bytes, of the lengths that line gives. Not
#: HTTP: the caller must start with the standard library's lightest parts (fastpath.py), and
#: http.client alone would cost it more than the whole exchange.
MAX_REQUEST = 1024 * 1024


def peer_uid(writer: asyncio.StreamWriter) -> int | None:
    """The caller's user ID, from the kernel (SO_PEERCRED), not from anything the caller sent;
    None where the platform has no peer credentials."""
    sock = writer.get_extra_info("socket")
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    return int(uid)


def _same_user(uid: int | None) -> bool:
    """Only the daemon's own user may use the socket (its 0600 mode says so too; this checks the
    caller's credentials in case the file's mode is changed)."""
    return uid is None or uid == os.getuid()


#: A Dataview account name (`discnode ui --as NAME`): what audit entries of its actions name.
MAX_ACCOUNT = 60


def account_name(value: Any, uid: int | None) -> str:
    """The account a login token names: the one asked for, else the caller's OS user."""
    from .audit import os_user
    from .errors import InvalidInput

    if value is None or value == "":
        return os_user(uid).removeprefix("os:")
    if (not isinstance(value, str) or not value.strip() or len(value) > MAX_ACCOUNT
            or not all(c.isprintable() for c in value)):
        raise InvalidInput(f"an account name is 1 to {MAX_ACCOUNT} printable characters")
    return value.strip()


async def _answer(local: Local, request: Any, uid: int | None = None) -> tuple[dict[str, Any], bytes]:
    from .errors import DiscnodeError

    op = request.get("op") if isinstance(request, dict) else None
    if op == "ping":  # `discnode status`: is the daemon up, and since when
        return {"pid": os.getpid(), "since": local.started}, b""
    if op == "ui-login":
        try:
            account = account_name(request.get("account"), uid)
        except DiscnodeError as exc:
            return {"error": str(exc)}, b""
        ui = await local.start_ui()
        return {"url": ui.login_url(account), "account": account}, b""
    if op == "cli":
        from .forward import run
        result = await run(local, request, uid)
        if result.get("fallback"):
            return {"fallback": True}, b""
        err, out = result["stderr"].encode(), result["stdout"].encode()
        return {"code": result["code"], "stderr": len(err), "stdout": len(out)}, err + out
    return {"error": "unknown operation"}, b""


def _handler(local: Local) -> Any:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            uid = peer_uid(writer)
            if not _same_user(uid):
                writer.write(b'{"error": "not the node\'s user"}\n')
                return
            line = await reader.readline()
            try:
                request = json.loads(line)
            except ValueError:
                request = None
            head, body = await _answer(local, request, uid)
            writer.write(json.dumps(head).encode() + b"\n")
            writer.write(body)
            await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass  # the caller went away, or sent junk: nothing to answer
        except Exception:  # noqa: BLE001 - a bug of ours must not end the daemon
            log.exception("local API request failed")
        finally:
            writer.close()
    return handle


@dataclass
class Running:
    local: Local
    server: asyncio.base_events.Server
    path: Path

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        await self.local.close()


async def start(home: Home, *, ui_port: int = 0, timeout: float = DEFAULT_TIMEOUT) -> Running:
    """Listen on HOME/daemon.sock. A socket left by a daemon that died is replaced; one that answers
    means another daemon runs for this home, and this one refuses to start."""
    from .errors import Conflict

    local = Local(home, timeout=timeout, ui_port=ui_port)
    path = socket_path(home.path)
    if path.exists():
        try:
            _, writer = await asyncio.open_unix_connection(str(path))
            writer.close()
            raise Conflict(f"another `discnode serve` is running for {home.path}")
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)
    old_umask = os.umask(0o177)  # created 0600: no window in which another user could connect
    try:
        server = await asyncio.start_unix_server(_handler(local), str(path), limit=MAX_REQUEST)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    return Running(local, server, path)
