"""The identity key at rest: plain (mode 0600) or sealed with a passphrase (sealed.py), and where
that passphrase comes from.

A stolen disk or backup tape then yields no usable key: the node's signature is what partners
trust, and a thief holding it could read their shared data as this partnership. The passphrase
is looked for, in order: a file given on the command line (`--passphrase-file`), the file named
by DISCNODE_PASSPHRASE_FILE, systemd's credential `$CREDENTIALS_DIRECTORY/discnode-passphrase`
(LoadCredentialEncrypted=, so it is never in a unit file or the environment), then a prompt if
the command runs at a terminal. Asked once per process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from . import sealed
from .errors import BadPassphrase, InvalidInput
from .identity import Identity, b64u, b64u_decode

KIND = "identity-key"
CREDENTIAL = "discnode-passphrase"
ENV = "DISCNODE_PASSPHRASE_FILE"

_given_file: Path | None = None
_cached: str | None = None
_prompted = False


def use_passphrase_file(path: Path | None) -> None:
    """`--passphrase-file`: read the passphrase from here (first line) when one is needed."""
    global _given_file, _cached
    _given_file, _cached = path, None


def forget() -> None:
    global _cached, _prompted
    _cached, _prompted = None, False


def prompted() -> bool:
    """Whether the passphrase in hand was typed (so cannot be found again by another process)."""
    return _prompted and _cached is not None


def given_passphrase(file: Path | None, what: str) -> str:
    """A passphrase to open something with: from `file`, or typed once at a terminal."""
    if file is not None:
        return read_passphrase_file(file)
    if sys.stdin is None or not sys.stdin.isatty():
        raise BadPassphrase(f"give --passphrase-file for {what} (no terminal to ask at)")
    import getpass
    return getpass.getpass(f"Passphrase for {what}: ")


def read_passphrase_file(path: Path) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadPassphrase(f"cannot read the passphrase file {path}: {getattr(exc, 'strerror', None) or exc}"
                            ) from None
    lines = text.splitlines()
    if not lines or not lines[0]:
        raise BadPassphrase(f"the passphrase file {path} is empty")
    return lines[0]


def _source() -> tuple[str, Path] | None:
    if _given_file is not None:
        return "--passphrase-file", _given_file
    if os.environ.get(ENV):
        return ENV, Path(os.environ[ENV])
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / CREDENTIAL).exists():
        return "systemd credential", Path(creds) / CREDENTIAL
    return None


def passphrase(purpose: str) -> str:
    """The passphrase for the identity key; BadPassphrase (one line) if none can be had. A file is
    read each time (it may change between commands run in one process); a typed one is kept."""
    global _cached, _prompted
    source = _source()
    if source is not None:
        return read_passphrase_file(source[1])
    if _cached is not None:
        return _cached
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass
        _cached, _prompted = getpass.getpass(f"Passphrase for {purpose}: "), True
        return _cached
    raise BadPassphrase(f"{purpose} is encrypted and no passphrase was given (use --passphrase-file, "
                        f"{ENV}, the systemd credential {CREDENTIAL}, or run at a terminal)")


def new_passphrase(file: Path | None, what: str) -> str:
    """A passphrase to encrypt with: from `file`, or typed twice at a terminal."""
    if file is not None:
        return sealed.check_passphrase(read_passphrase_file(file))
    if sys.stdin is None or not sys.stdin.isatty():
        raise BadPassphrase(f"give --passphrase-file for {what} (no terminal to ask at)")
    import getpass
    first = getpass.getpass(f"New passphrase for {what}: ")
    sealed.check_passphrase(first)
    if getpass.getpass("Again: ") != first:
        raise BadPassphrase("the two passphrases differ; nothing was changed")
    return first


def is_encrypted(path: Path) -> bool:
    return sealed.is_sealed(Path(path).read_bytes())


def load(path: Path) -> Identity:
    raw = Path(path).read_bytes()
    if sealed.is_sealed(raw):
        given = passphrase("the identity key")
        try:
            raw = sealed.open_bytes(raw, given, KIND)
        except BadPassphrase:
            forget()
            raise BadPassphrase("wrong passphrase for the identity key") from None
    return Identity.from_seed(b64u_decode(raw.decode("ascii", "replace").strip()))


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def sealed_key(identity: Identity, new: str) -> bytes:
    return sealed.seal_bytes(b64u(bytes(identity.signing_key)).encode() + b"\n", new, KIND)


def encrypt(path: Path, identity: Identity, new: str) -> None:
    """Replace the key file by the same key sealed with `new` (atomic: never half-written)."""
    _replace(Path(path), sealed_key(identity, new))


def decrypt(path: Path, identity: Identity) -> None:
    if not is_encrypted(path):
        raise InvalidInput("the identity key is not encrypted")
    _replace(Path(path), b64u(bytes(identity.signing_key)).encode() + b"\n")
