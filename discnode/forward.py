"""Commands forwarded by the command line (fastpath.py) and run inside the daemon.

The daemon runs the very same CLI function (cli.main) on the command line it was sent, so results,
errors, exit codes and audit entries are those of the command run alone; only two things differ:
its output is rendered for the caller's terminal width into a buffer that goes back over the
socket, and its peer requests go through the daemon's warm client (pinned connections already
open, validators already compiled). Commands run one at a time, in a worker thread with its own
event loop, so the daemon's loop keeps serving peers meanwhile.

Only read-only commands that take no file path are forwarded (fastpath.forwardable): a relative
path would mean the daemon's working directory, not the caller's.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import threading
from typing import Any

from .fastpath import forwardable
from .localapi import Local

_lock = asyncio.Lock()
_bridge = threading.local()


class BridgedClient:
    """A PeerClient for code running on another thread's event loop: each request runs on the
    daemon's loop, through its warm client."""

    def __init__(self, local: Local, loop: asyncio.AbstractEventLoop) -> None:
        self._local, self._loop = local, loop

    async def _on_daemon(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return await getattr(self._local.client, method)(*args, **kwargs)  # runs on the daemon's loop

    async def request(self, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(self._on_daemon("request", *args, **kwargs), self._loop))

    async def call_json(self, *args: Any, **kwargs: Any) -> Any:
        return await asyncio.wrap_future(
            asyncio.run_coroutine_threadsafe(self._on_daemon("call_json", *args, **kwargs), self._loop))

    async def close(self) -> None:
        """The daemon's client stays open: that is the point."""

    async def __aenter__(self) -> "BridgedClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


def bridged_client() -> BridgedClient | None:
    """The daemon's client when called from a forwarded command's thread, else None."""
    return getattr(_bridge, "client", None)


def _run_cli(local: Local, argv: list[str], width: int, tty: bool, loop: asyncio.AbstractEventLoop,
             uid: int | None = None) -> dict[str, Any]:
    from rich.console import Console

    from . import audit, cli, output

    out, err = io.StringIO(), io.StringIO()
    saved = output.console, output.err_console
    # A height too, so that the console never asks the daemon's own terminal for its size (three
    # system calls and two environment lookups on every print and every `output.narrow()`).
    output.console = Console(file=out, width=width, height=25, force_terminal=tty,
                             color_system="standard" if tty else None,
                             highlight=True, emoji=False)  # emoji=False as output.py's own consoles
    output.err_console = Console(file=err, width=width, height=25, force_terminal=tty,
                                 color_system="standard" if tty else None, emoji=False)
    _bridge.client = BridgedClient(local, loop)
    code = 0
    try:
        # The caller's user from the socket's peer credentials (localapi), not from anything it sent.
        actor = audit.os_user(uid) if uid is not None else audit.os_user()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), audit.acting(actor):
            try:
                cli.main(["--home", str(local.home.path), *argv])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        _bridge.client = None
        output.console, output.err_console = saved
    return {"stdout": out.getvalue(), "stderr": err.getvalue(), "code": code}


async def run(local: Local, body: Any, uid: int | None = None) -> dict[str, Any]:
    """Run a forwarded command line; {"fallback": true} for one the daemon does not run."""
    if not isinstance(body, dict):
        return {"fallback": True}
    argv, width, tty = body.get("argv"), body.get("width"), body.get("tty") is True
    if (not isinstance(argv, list) or not all(isinstance(a, str) for a in argv) or len(argv) > 200
            or not isinstance(width, int) or not 20 <= width <= 1000):
        return {"fallback": True}
    argv = _without_home(argv)
    if argv is None or not forwardable(argv):
        return {"fallback": True}
    async with _lock:  # output.console is one per process: one forwarded command at a time
        return await asyncio.to_thread(_run_cli, local, argv, width, tty, asyncio.get_running_loop(), uid)


def _without_home(argv: list[str]) -> list[str] | None:
    """argv without its leading --home (the caller found this daemon's socket in that home)."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--home":
            i += 2
            continue
        if arg.startswith("--home="):
            i += 1
            continue
        out.append(arg)
        i += 1
    return out
