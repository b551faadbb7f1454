"""Values that came from outside (a peer, a descriptor, discovery, or an address an administrator
typed), checked before they become a URL, a URL path segment or a file name.

One place for the rule, so that every entry point applies the same one: `peer add`, `address`,
discovery, descriptors received from the network, and the descriptor schema (whose `url` pattern
says the same thing in JSON Schema words).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

import yarl

from . import schemas
from .errors import InvalidInput

MAX_URL = 300
_HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


def _shown(value: Any) -> str:
    return repr(value)[:80]


#: URLs already found valid, with their canonical form: every request to a peer checks its pinned
#: address again, and the check (yarl, ipaddress, a scan of every character) was a tenth of the
#: searching node's CPU per request. Only successes are kept; the result depends on the text alone.
_VALID: dict[str, str] = {}


def peer_url(value: Any, what: str = "peer URL") -> str:
    """The canonical `https://HOST:PORT` of a peer's base URL, or InvalidInput."""
    if type(value) is str:
        found = _VALID.get(value)
        if found is not None:
            return found
    canonical = _peer_url(value, what)
    if len(_VALID) >= 4096:
        _VALID.clear()
    _VALID[value] = canonical
    return canonical


def _peer_url(value: Any, what: str) -> str:
    """The canonical `https://HOST:PORT` of a peer's base URL, or InvalidInput.

    A peer URL is an origin and nothing more: https (pinning needs TLS), a host, a port. No user
    name or password (they would be sent to whoever answers), no path, query or fragment (they
    would ride along on every request, and a path is how a URL is pointed at something else on
    the same host). A trailing "/" is tolerated and dropped."""
    if not isinstance(value, str) or not value or len(value) > MAX_URL:
        raise InvalidInput(f"{what} {_shown(value)} is not a URL of at most {MAX_URL} characters")
    authority = value.partition("://")[2].removesuffix("/")
    if any(c.isspace() or not c.isprintable() or c in "\\@?#%" for c in value) or "/" in authority:
        raise InvalidInput(f"{what} {_shown(value)}: a peer URL is https://HOST:PORT only "
                           "(no user name, path, query or fragment)")
    try:
        url = yarl.URL(value)  # aiohttp's own parser: what is checked here is what it would send
    except ValueError:
        raise InvalidInput(f"{what} {_shown(value)} is not a valid URL") from None
    if url.scheme != "https":
        raise InvalidInput(f"{what} {_shown(value)} must start with https:// (peers speak HTTPS only)")
    if url.raw_path not in ("", "/") or url.raw_user or url.raw_password:
        raise InvalidInput(f"{what} {_shown(value)}: a peer URL is https://HOST:PORT only "
                           "(no user name, path, query or fragment)")
    host = url.raw_host or ""
    try:
        ip = ipaddress.ip_address(host)
        shown_host = f"[{ip.compressed}]" if ip.version == 6 else ip.compressed
    except ValueError:
        if not _HOST_NAME.fullmatch(host) or len(host) > 253:
            raise InvalidInput(f"{what} {_shown(value)} does not name a valid host") from None
        shown_host = host.lower()
    port = url.port
    if port is None or not 0 < port < 65536:
        raise InvalidInput(f"{what} {_shown(value)} has no valid port")
    return f"https://{shown_host}:{port}"


def checked(kind: str, value: Any, what: str) -> str:
    """`value` if it matches the shared code-list pattern `kind` (codes.schema.json $defs: sha256_hex,
    profile_id, node_id), else InvalidInput. Whole-string match: Python's `$` also matches before a
    final newline, which a file name or URL segment must never carry."""
    pattern = schemas.schema("codes")["$defs"][kind]["pattern"]
    if not isinstance(value, str) or re.fullmatch(pattern.removeprefix("^").removesuffix("$"), value) is None:
        raise InvalidInput(f"{what} {_shown(value)} is not a valid {kind.replace('_', ' ')}")
    return value


def file_in(folder: Path, name: str) -> Path:
    """The path of file `name` directly inside `folder`, or InvalidInput if it would land anywhere
    else (a separator, "..", an absolute name, or a symbolic link already there pointing out)."""
    root = folder.resolve()
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise InvalidInput(f"file name {_shown(name)} is not a plain file name")
    target = (root / name).resolve()
    if target.parent != root:
        raise InvalidInput(f"file name {_shown(name)} would be written outside {folder}")
    return target
