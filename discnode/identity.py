"""A node's Ed25519 identity, its node ID, and the TLS certificate bound to it.

The node ID is a fingerprint of the public key that an administrator can read over the phone:
SHA-256 of the raw 32-byte key, its first 15 bytes as base32 (24 characters), in four groups of six,
each followed by a Luhn mod 32 check character (Syncthing's scheme), e.g. ``MFRGG2A-...``.
A single mistyped character, and most swaps of neighbours, fail the check. The Luhn mod N step is
written by hand: it is ten lines and no maintained library that we already depend on has it.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import ssl
from typing import TYPE_CHECKING

import nacl.signing

from .errors import InvalidInput

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ed25519

# `cryptography` is imported where it is used (making a certificate; the RFC 9421 library's rare
# requests): a serving node never needs it otherwise, and it is ~8.5 MB of every node's RSS.

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_GROUPS, _GROUP_LEN = 4, 6


def _luhn32(chars: str) -> str:
    factor, total = 2, 0
    for ch in reversed(chars):
        addend = factor * ALPHABET.index(ch)
        factor = 1 if factor == 2 else 2
        total += addend // 32 + addend % 32
    return ALPHABET[(32 - total % 32) % 32]


def node_id_for(public_key: bytes) -> str:
    if len(public_key) != 32:
        raise InvalidInput("an Ed25519 public key is 32 bytes")
    raw = base64.b32encode(hashlib.sha256(public_key).digest()[:15]).decode()
    groups = [raw[i * _GROUP_LEN : (i + 1) * _GROUP_LEN] for i in range(_GROUPS)]
    return "-".join(g + _luhn32(g) for g in groups)


def parse_node_id(text: str) -> str:
    """Normalise a typed node ID (any case, spaces or dashes) and check it; InvalidInput if wrong."""
    if type(text) is str:
        return _parse_text(text)
    return _parse(text)


def _parse(text: str) -> str:
    cleaned = "".join(ch for ch in str(text).upper() if ch not in " -\t")
    width = _GROUP_LEN + 1
    if len(cleaned) != _GROUPS * width or any(ch not in ALPHABET for ch in cleaned):
        raise InvalidInput(f"{text!r} is not a node ID (four groups of seven letters A-Z and digits 2-7)")
    groups = [cleaned[i * width : (i + 1) * width] for i in range(_GROUPS)]
    for n, group in enumerate(groups, 1):
        if _luhn32(group[:-1]) != group[-1]:
            raise InvalidInput(f"node ID {text!r} has a typo in group {n} (its check character does not match)")
    return "-".join(groups)


#: _parse of a string, kept: a pure function of its text (a refusal is raised, never kept), and a
#: search parses the same partnership IDs on every page (13 us each, 30 a page at 30 partnerships).
_parse_text = functools.lru_cache(maxsize=4096)(_parse)


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_decode(text: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidInput("expected base64url text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise InvalidInput(f"not base64url: {exc}") from None


@dataclass(frozen=True)
class Identity:
    """A node's key pair. The public key, node ID and `cryptography` key are derived once, on first
    use, and kept: every signed request and every served query reads them."""

    signing_key: nacl.signing.SigningKey
    #: The node ID when this key is not the node's first (after a succession, spec 4.6): the
    #: fingerprint of the inception key, which stays the ID. None: this key's own fingerprint.
    inception_id: str | None = None

    @classmethod
    def generate(cls) -> "Identity":
        return cls(nacl.signing.SigningKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> "Identity":
        return cls(nacl.signing.SigningKey(seed))

    @cached_property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @cached_property
    def public_key_b64(self) -> str:
        return b64u(self.public_key)

    @cached_property
    def node_id(self) -> str:
        return self.inception_id or node_id_for(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self.signing_key.sign(message).signature

    def crypto_private_key(self) -> "ed25519.Ed25519PrivateKey":
        """The same key as a `cryptography` object, for the RFC 9421 library."""
        return self._crypto_private_key

    @cached_property
    def _crypto_private_key(self) -> "ed25519.Ed25519PrivateKey":
        from cryptography.hazmat.primitives.asymmetric import ed25519
        return ed25519.Ed25519PrivateKey.from_private_bytes(bytes(self.signing_key))


def write_secret(path: Path, data: bytes) -> None:
    """Create a file readable by its owner only; refuse to replace one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def save_identity(identity: Identity, path: Path) -> None:
    write_secret(path, b64u(bytes(identity.signing_key)).encode() + b"\n")


def load_identity(path: Path) -> Identity:
    return Identity.from_seed(b64u_decode(path.read_text().strip()))


def save_next_key(identity: Identity, path: Path, node_id: str) -> None:
    """The committed next key, for the safe: one line of base64url after comment lines that say
    what it is, so that a printed copy can be typed back in."""
    write_secret(path, (f"# discnode NEXT key for node {node_id}: keep it offline (a safe, a printed copy)\n"
                        "# Needed once, for `discnode key rotate --next-key FILE`. Not the current key.\n"
                        f"{b64u(bytes(identity.signing_key))}\n").encode())


def load_next_key(path: Path) -> Identity:
    """A next-key file (save_next_key), comment lines ignored; InvalidInput if it is not one."""
    try:
        lines = [line.strip() for line in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read the next-key file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    seeds = [line for line in lines if line and not line.startswith("#")]
    seed = b64u_decode(seeds[0]) if len(seeds) == 1 else b""
    if len(seed) != 32:
        raise InvalidInput(f"{path} is not a discnode key file (one line of 43 base64url characters)")
    return Identity.from_seed(seed)


def make_tls_certificate(node_id: str, host: str) -> tuple[bytes, bytes]:
    """A self-signed certificate (PEM) and its key (PEM). Peers pin its SHA-256, which the node's
    signed descriptor carries: the signature, not a CA, binds the certificate to the node ID."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id)])
    now = dt.datetime.now(dt.timezone.utc)
    alt: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        alt.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        alt.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def certificate_fingerprint(cert_pem: bytes) -> str:
    """SHA-256 of the DER certificate, lowercase hex: what aiohttp.Fingerprint pins. (The standard
    library's PEM decoding: the serving node then never loads `cryptography`.)"""
    try:
        der = ssl.PEM_cert_to_DER_cert(cert_pem.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("not a PEM certificate") from None
    return hashlib.sha256(der).hexdigest()
