"""Sealed files: bytes encrypted with a passphrase (spec: protocol/sealed-v1.md). Pure, but for
the file objects it is handed.

Used for backups (`discnode backup`) and for the identity key kept encrypted at rest. scrypt
(RFC 7914) turns the passphrase into a 256-bit key; AES-256-GCM seals the data in chunks of
`chunk` bytes, each with the nonce "chunk number, last-chunk flag" (the STREAM construction of
Hoang, Reyhanitabar, Rogaway and Vizar, as age and Tink's streaming AEAD use it), and the header
line as associated data. So a backup of any size is written and read in constant memory, and a
cut-off, reordered or altered file fails to open rather than restoring part of a node.

The chunk framing is written here by hand: `cryptography` has AES-GCM and scrypt but no streaming
mode, and age (pyrage) takes a passphrase only for whole in-memory buffers, which a backup with
17,000 photographs is not.
"""

from __future__ import annotations

import base64
import json
import os
import unicodedata
from typing import BinaryIO, Iterator

from .errors import BadPassphrase, InvalidInput

FORMAT = "discnode-sealed/1"
#: scrypt cost: 2**17 x 128 x r bytes = 128 MiB and about half a second, as OWASP advises.
LOG2N, R, P = 17, 8, 1
#: Most a file may ask of the reader (a hostile file must not make restore take gigabytes).
MAX_LOG2N = 20
CHUNK = 1024 * 1024
TAG = 16
MAX_HEADER = 1024


def _key(passphrase: str, salt: bytes, log2n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
    text = unicodedata.normalize("NFC", passphrase).encode("utf-8")
    return Scrypt(salt=salt, length=32, n=2 ** log2n, r=r, p=p).derive(text)


def _nonce(index: int, last: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def check_passphrase(passphrase: str) -> str:
    if len(passphrase) < 8:
        raise InvalidInput("a passphrase must be at least 8 characters (better: four or more random words)")
    return passphrase


class Writer:
    """Seal everything written to it into `out`; `close()` writes the last chunk (required)."""

    def __init__(self, out: BinaryIO, passphrase: str, kind: str, *, log2n: int = LOG2N,
                 chunk: int | None = None) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        chunk = chunk or CHUNK
        salt = os.urandom(16)
        header = {"format": FORMAT, "kind": kind, "kdf": "scrypt", "log2n": log2n, "r": R, "p": P,
                  "salt": base64.urlsafe_b64encode(salt).rstrip(b"=").decode(), "aead": "AES-256-GCM",
                  "chunk": chunk}
        self.header = json.dumps(header, separators=(",", ":")).encode() + b"\n"
        self.aead = AESGCM(_key(check_passphrase(passphrase), salt, log2n, R, P))
        self.out, self.chunk, self.index, self.buf = out, chunk, 0, bytearray()
        out.write(self.header)

    def write(self, data: bytes) -> int:
        self.buf += data
        while len(self.buf) > self.chunk:  # keep at least one byte back: the last chunk is flagged
            self._seal(bytes(self.buf[:self.chunk]), last=False)
            del self.buf[:self.chunk]
        return len(data)

    def _seal(self, plain: bytes, last: bool) -> None:
        self.out.write(self.aead.encrypt(_nonce(self.index, last), plain, self.header))
        self.index += 1

    def close(self) -> None:
        self._seal(bytes(self.buf), last=True)
        self.buf.clear()


def _header(line: bytes, kind: str) -> dict[str, object]:
    try:
        header = json.loads(line)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InvalidInput(f"not a discnode {kind} file (no {FORMAT} header)")
    if header.get("kind") != kind:
        raise InvalidInput(f"this is a discnode {str(header.get('kind'))[:20]!r} file, not a {kind}")
    ok = (header.get("kdf") == "scrypt" and header.get("aead") == "AES-256-GCM"
          and all(type(header.get(k)) is int for k in ("log2n", "r", "p", "chunk"))
          and 10 <= header["log2n"] <= MAX_LOG2N and 1 <= header["r"] <= 32 and 1 <= header["p"] <= 4
          and 1 <= header["chunk"] <= 16 * CHUNK and isinstance(header.get("salt"), str))
    if not ok:
        raise InvalidInput(f"the {kind} file's header asks for parameters this version does not accept")
    return header


def open_chunks(src: BinaryIO, passphrase: str, kind: str) -> Iterator[bytes]:
    """The plaintext, chunk by chunk. BadPassphrase before the first chunk if the passphrase is
    wrong; InvalidInput if the file is cut short or altered (possibly after some chunks: callers
    write to a scratch place and keep it only when the iterator ends)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    line = src.readline(MAX_HEADER)
    header = _header(line, kind)
    salt = base64.urlsafe_b64decode(str(header["salt"]) + "=" * (-len(str(header["salt"])) % 4))
    aead = AESGCM(_key(passphrase, salt, int(header["log2n"]), int(header["r"]), int(header["p"])))  # type: ignore[call-overload]
    size = int(header["chunk"]) + TAG  # type: ignore[call-overload]
    block, index = src.read(size), 0
    while True:
        after = src.read(size) if len(block) == size else b""
        last = not after
        try:
            plain = aead.decrypt(_nonce(index, last), block, line)
        except InvalidTag:
            if index == 0:
                # The first chunk fails alike for a wrong passphrase and for a damaged start; the
                # passphrase is by far the likelier.
                raise BadPassphrase(f"wrong passphrase for this {kind} (or the file is damaged)") from None
            raise InvalidInput(f"the {kind} file is damaged or cut short at chunk {index}") from None
        yield plain
        if last:
            return
        block, index = after, index + 1


def seal_bytes(data: bytes, passphrase: str, kind: str, *, log2n: int = LOG2N) -> bytes:
    import io
    out = io.BytesIO()
    w = Writer(out, passphrase, kind, log2n=log2n)
    w.write(data)
    w.close()
    return out.getvalue()


def open_bytes(blob: bytes, passphrase: str, kind: str) -> bytes:
    import io
    return b"".join(open_chunks(io.BytesIO(blob), passphrase, kind))


def is_sealed(blob: bytes) -> bool:
    return blob.startswith(b'{"format":"' + FORMAT.encode())
