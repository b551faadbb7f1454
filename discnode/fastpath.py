"""Talking to the running node over its Unix socket, with the standard library alone.

Importing typer, rich and aiohttp costs a command ~0.4 s before it does anything; a search across
thirty partners answered by the running daemon takes a few tens of milliseconds. So the console
script starts here: if the daemon runs for this home and the command is one it renders, the
command line and terminal width go to the daemon and what it renders is printed; otherwise the
full CLI runs as it always has. This module must import nothing outside the standard library.
"""

from __future__ import annotations

import json
import os
import sys

# The C half of `socket`: the Python half imports selectors, enum and more (~4 ms of a command's
# ~35 ms of CPU) for nothing this module uses. pathlib and typing are left out for the same reason.
try:
    import _socket as socket
except ImportError:  # an interpreter without CPython's module layout
    import socket  # type: ignore[no-redef]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Union
    PathLike = Union[str, "os.PathLike[str]"]

SOCKET_NAME = "daemon.sock"  # localapi.SOCKET_NAME; not imported, to stay light
#: Commands the daemon renders (forward.py), with their subcommands: read-only, and taking no file
#: path (a relative one would be the daemon's, not the caller's). Any other goes to the full CLI.
FORWARDED: dict[str, frozenset[str] | None] = {
    "search": None, "audit": None, "id": None, "report": None,
    "profile": frozenset({"list", "show"}), "peer": frozenset({"list"}),
}
NOT_FORWARDED_OPTIONS = ("--help", "--contact-sheet", "--save-images", "--output", "-o")  # file paths stay here
#: Options naming a folder for one command only (`search --csv` is a flag; `report --csv DIR` is not).
NOT_FORWARDED_FOR: dict[str, tuple[str, ...]] = {"report": ("--csv", "--charts")}
#: Seconds to wait for the daemon: a walk of every page can take a while.
TIMEOUT = 600.0


def _exchange(home: PathLike, request: dict[str, Any], timeout: float) -> tuple[dict[str, Any], bytes] | None:
    """One request to the daemon's socket (localapi.py's protocol): its reply line and the bytes
    after it; None if no daemon answers for this home."""
    sock_path = os.path.join(os.fspath(home), SOCKET_NAME)
    if not os.path.exists(sock_path):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(sock_path)
        except (ConnectionRefusedError, FileNotFoundError):
            return None  # a socket left behind by a daemon that is no longer running
        sock.sendall(json.dumps(request).encode() + b"\n")
        received = b""
        while b"\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        line, _, rest = received.partition(b"\n")
        head = json.loads(line or b"null")
        if not isinstance(head, dict):
            return None
        size = head.get("stderr", 0) + head.get("stdout", 0) if "code" in head else 0
        parts = [rest]
        have = len(rest)
        while have < size:
            chunk = sock.recv(max(65536, size - have))
            if not chunk:
                break
            parts.append(chunk)
            have += len(chunk)
        body = b"".join(parts)[:size]
    finally:
        sock.close()
    return head, body


def request(home: PathLike, op: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any] | None:
    """The daemon's reply to one operation, or None if no daemon answers for this home."""
    got = _exchange(home, {"op": op, **fields}, timeout)
    return None if got is None else got[0]


def _home(argv: list[str]) -> str | None:
    """--home DIR (or --home=DIR) before the command, else DISCNODE_HOME, else the default
    (platformdirs' user data folder on Linux, computed here to avoid importing it)."""
    for i, arg in enumerate(argv):
        if arg == "--home" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--home="):
            return arg.split("=", 1)[1]
        if not arg.startswith("-"):
            break
    if os.environ.get("DISCNODE_HOME"):
        return os.environ["DISCNODE_HOME"]
    if sys.platform != "linux":
        return None
    base = os.environ.get("XDG_DATA_HOME", "").strip() or os.path.expanduser("~/.local/share")
    return os.path.join(base, "discnode")


def _words(argv: list[str]) -> list[str]:
    """The command words: leading arguments that are not options (nor --home's value)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--home":
            skip = True
        elif arg.startswith("-"):
            if out:
                break
        else:
            out.append(arg)
            if len(out) == 2:
                break
    return out


def forwardable(argv: list[str]) -> bool:
    words = _words(argv)
    if not words or words[0] not in FORWARDED:
        return False
    subcommands = FORWARDED[words[0]]
    if subcommands is not None and (len(words) < 2 or words[1] not in subcommands):
        return False
    kept_here = NOT_FORWARDED_OPTIONS + NOT_FORWARDED_FOR.get(words[0], ())
    return not any(a.split("=", 1)[0] in kept_here or a == "-h" for a in argv)


def forward(argv: list[str]) -> int | None:
    """Run argv in the daemon and print its output; None to fall back to the full CLI."""
    if not forwardable(argv) or os.environ.get("DISCNODE_NO_DAEMON"):
        return None
    home = _home(argv)
    if home is None:
        return None
    try:
        width = os.get_terminal_size(sys.stdout.fileno()).columns
    except OSError:
        width = 0
    width = int(os.environ.get("COLUMNS", "0") or 0) or width or 80
    try:
        got = _exchange(home, {"op": "cli", "argv": argv, "width": width, "tty": sys.stdout.isatty()}, TIMEOUT)
    except (OSError, ValueError):
        return None
    if got is None or "code" not in got[0]:  # {"fallback": true}
        return None
    head, data = got
    sys.stdout.flush()
    sys.stderr.buffer.write(data[: head["stderr"]])
    sys.stderr.flush()
    sys.stdout.buffer.write(data[head["stderr"]:])
    sys.stdout.flush()
    return int(head["code"])


def main() -> None:
    """The `discnode` console script."""
    argv = sys.argv[1:]
    code = forward(argv)
    if code is not None:
        # Answered, and forward() flushed both streams: nothing is left for the interpreter's
        # teardown to do but free modules, ~2.5 ms of a ~25 ms command's CPU. No atexit handler
        # is registered on this path (the standard library's light parts register none).
        os._exit(code)
    from .cli import main as cli_main
    cli_main(argv)
